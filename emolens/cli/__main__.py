from emolens.cli import main

raise SystemExit(main())
