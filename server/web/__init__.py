"""HTTP plumbing both apps share: the error envelope and request checks, the OpenAPI
document, compression, the JSON parser of bodies, the device's WSGI server, what both metrics
scrapes share, and an app's commands run outside `flask`. It may import the core only."""
