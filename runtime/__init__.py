"""segscale runtime: the code that runs inside the api, worker and results containers."""
