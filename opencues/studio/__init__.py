"""Studio: the web console at ``/studio`` (server-rendered pages over the same library as the API).

``routes`` lists every page, ``views`` holds them, ``render`` guards and renders them, ``session``
signs browsers in. Templates, CSS and JavaScript ship in this package: no build step, no CDN.
"""
