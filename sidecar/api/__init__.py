"""HTTP endpoints under /admin, one blueprint per resource."""
