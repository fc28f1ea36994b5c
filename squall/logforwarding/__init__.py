"""Log forwarding (Adobe I/O Runtime): a namespace's activation logs sent to Splunk HEC,
Azure Log Analytics or New Relic. ``config`` is what ``aio
rt:namespace:log-forwarding:*`` sets, ``destinations`` how each destination is spoken to,
``forwarder`` the batching, retries and bounded buffer between the completion path and
the destinations."""
