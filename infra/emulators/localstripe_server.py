"""Runs localstripe (same arguments) with two changes to its webhook endpoints.

1. Each delivery walks a snapshot of the endpoints. localstripe 1.15.10, the newest
   release, walks its live dict across the await of every POST, so an endpoint
   registered meanwhile raises "dictionary changed size during iteration" in the
   delivery task and the event never reaches the endpoints not yet visited. Tests start
   stacks concurrently and each registers its own endpoint, so payment_intent.succeeded
   went missing at random, more often as endpoints piled up ahead of the live ones.
2. DELETE /_config/webhooks/{id} unregisters an endpoint, so a stack that stops takes
   its endpoint with it instead of leaving one that every later event is sent to first.
"""

from aiohttp import web
from localstripe import server, webhooks


class _Endpoints(dict):
    def values(self):
        return list(super().values())


webhooks._webhooks = _Endpoints(webhooks._webhooks)


async def _unregister(request):
    webhooks._webhooks.pop(request.match_info["id"], None)
    return web.Response()


server.app.router.add_delete("/_config/webhooks/{id}", _unregister)

if __name__ == "__main__":
    server.start()
