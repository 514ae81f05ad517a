"""Great Expectations suites as code, one module per dataset, and the gate that runs them."""
