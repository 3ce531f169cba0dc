"""The platform's services: thin main loops that wire library pieces to gRPC and the bus."""
