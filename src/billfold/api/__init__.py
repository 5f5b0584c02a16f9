"""HTTP dialects: each module translates one API family's shapes into service calls."""
