"""HTTP plumbing both apps share: the error envelope and request checks, the OpenAPI
document, compression, the JSON parser of bodies, the device's WSGI server."""
