"""Built-in feed providers. ``/whisk.system/alarms`` (cron, interval, once) runs inside
the controller: :mod:`~squall.feeds.provider` fires due ticks, :mod:`~squall.feeds.actions`
runs the feed actions' lifecycle events (:mod:`~squall.feeds.lifecycle`), and the
schedules (:mod:`~squall.feeds.alarm`, :mod:`~squall.feeds.cron`) live in the store."""
