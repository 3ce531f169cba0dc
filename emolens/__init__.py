"""emolens: emotion analytics from face images and camera streams."""
