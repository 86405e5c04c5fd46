"""Runs localstripe (same arguments) with two changes to its webhook endpoints and one
to its invoices.

1. Each delivery walks a snapshot of the endpoints. localstripe 1.15.10, the newest
   release, walks its live dict across the await of every POST, so an endpoint
   registered meanwhile raises "dictionary changed size during iteration" in the
   delivery task and the event never reaches the endpoints not yet visited. Tests start
   stacks concurrently and each registers its own endpoint, so payment_intent.succeeded
   went missing at random, more often as endpoints piled up ahead of the live ones.
2. DELETE /_config/webhooks/{id} unregisters an endpoint, so a stack that stops takes
   its endpoint with it instead of leaving one that every later event is sent to first.
3. A subscription's invoices carry what Stripe's do and localstripe leaves out:
   `billing_reason` (`subscription_create` for the invoice a new subscription makes,
   `subscription_cycle` for one made later for it: localstripe has no clock to renew
   on, so a test makes the renewal with POST /v1/invoices) and `subscription_details`
   with the subscription's metadata, which is how Stripe names whose an invoice is.
   And a payment of an invoice that fails reports `invoice.payment_failed`, as Stripe's
   does: localstripe's POST /v1/invoices/{id}/pay leaves the invoice open silently.
4. GET /v1/refunds?payment_intent= of an intent with no charge yet answers an empty
   list, as Stripe's does; localstripe fails on the missing charge.
5. GET /v1/payment_intents takes `customer`, as Stripe's does, newest first; localstripe
   refuses the parameter.
"""

from aiohttp import web
from localstripe import resources, server, webhooks


class _Endpoints(dict):
    def values(self):
        return list(super().values())


webhooks._webhooks = _Endpoints(webhooks._webhooks)


_invoice_init = resources.Invoice.__init__


def _invoice_with_subscription_details(self, *args, **kwargs):
    subscription = kwargs.get("subscription")
    first = False
    if subscription is not None:
        first = resources.Subscription._api_retrieve(subscription).status == "incomplete"
    _invoice_init(self, *args, **kwargs)
    if subscription is not None:
        sub = resources.Subscription._api_retrieve(subscription)
        self.billing_reason = "subscription_create" if first else "subscription_cycle"
        self.subscription_details = {"metadata": dict(sub.metadata or {})}


resources.Invoice.__init__ = _invoice_with_subscription_details

_confirm = resources.PaymentIntent._confirm


def _confirm_reporting_the_invoice(self, on_failure_now):
    def failed():
        on_failure_now()
        if self.invoice:
            invoice = resources.Invoice._api_retrieve(self.invoice)
            webhooks.schedule_webhook(resources.Event("invoice.payment_failed", invoice))

    # An intent confirmed through its own API reports its invoice already.
    if on_failure_now == getattr(self, "_report_failure", None):
        return _confirm(self, on_failure_now)
    return _confirm(self, failed)


resources.PaymentIntent._confirm = _confirm_reporting_the_invoice


_list_refunds = resources.Refund._api_list_all.__func__


def _list_refunds_of_any_intent(cls, url, charge=None, payment_intent=None, **kwargs):
    if charge is None and payment_intent is not None:
        intent = resources.PaymentIntent._api_retrieve(payment_intent)
        if intent.latest_charge is None:
            return resources.List(
                url, limit=kwargs.get("limit"), starting_after=kwargs.get("starting_after")
            )
    return _list_refunds(cls, url, charge=charge, payment_intent=payment_intent, **kwargs)


resources.Refund._api_list_all = classmethod(_list_refunds_of_any_intent)

_list_all = resources.StripeObject._api_list_all.__func__


def _list_intents_of_customer(cls, url, customer=None, limit=None, starting_after=None):
    listed = _list_all(cls, url, limit=limit, starting_after=starting_after)
    if customer is not None:
        listed._list = [i for i in listed._list if i.customer == customer]
    listed._list.sort(key=lambda i: i.created, reverse=True)
    return listed


resources.PaymentIntent._api_list_all = classmethod(_list_intents_of_customer)


async def _unregister(request):
    webhooks._webhooks.pop(request.match_info["id"], None)
    return web.Response()


server.app.router.add_delete("/_config/webhooks/{id}", _unregister)

if __name__ == "__main__":
    server.start()
