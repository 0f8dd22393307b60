"""A real FHIR R4 server for the FHIR adapter's tests: the Node server in ``server/``, its seed and fixture."""
