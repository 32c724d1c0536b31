"""
Traces and logs to Azure Monitor (Application Insights) through OpenTelemetry,
switched on by APPLICATIONINSIGHTS_CONNECTION_STRING: the setting App Service
adds when the app is linked to an Application Insights resource. Without it
nothing of OpenTelemetry is imported or started.

What goes: a request trace for each HTTP request (Django's instrumentation,
database queries beneath it), the chat's own log lines at LOG_LEVEL and above
(the "chat" logger), and the exporter's standard metrics. The chat's own
figures (joins, deliveries, fan-out lag) stay on /metrics. Live metrics are off:
they keep a connection of their own to Azure open from every process.

The exporter reads its own environment variables too
(APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL, OTEL_TRACES_SAMPLER_ARG, ...).
"""

import os

CONNECTION_STRING = "APPLICATIONINSIGHTS_CONNECTION_STRING"


def configure_at_start() -> bool:
    """
    Start the export when asked to; whether it was. Called once per process,
    after Django's settings and logging are set up (so that the handler added
    to the "chat" logger stays) and before Django's ASGI handler is made (so
    that the request instrumentation's middleware is part of it).
    """
    connection_string = os.environ.get(CONNECTION_STRING, "").strip()
    if not connection_string:
        return False
    from azure.monitor.opentelemetry import configure_azure_monitor

    configure_azure_monitor(
        connection_string=connection_string,
        logger_name="chat",
        enable_live_metrics=False,
        # Only what this app uses: the others would be looked for and skipped.
        instrumentation_options={
            name: {"enabled": False}
            for name in ("fastapi", "flask", "psycopg2", "requests", "urllib")
        },
    )
    return True
