"""The HTTP kit the faces and pages stand on.

Body reading, the endpoint wrapper, SSE, error mapping, observation, OpenAPI, wire conversions.
"""
