"""`atoll router`: the stable URL of every endpoint, `/endpoints/{name}/...`.

`table.py` reads the endpoints' routes from the platform database (cached, refreshed every
`router_refresh_seconds`); `choice.py` picks the deployment of a request from an
endpoint's routes (a pure function, where weighted splits and sticky assignment plug in);
`app.py` is the ASGI app that forwards to the chosen deployment's model server. The
router never imports the deployment targets (an import-linter contract holds it to that).
"""
