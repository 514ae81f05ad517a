"""The work of segflow, by stage. Every function here runs without Prefect; flows/ wraps them."""
