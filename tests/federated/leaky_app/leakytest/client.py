"""Echo the received arrays with a case count; the node named ``leak-site`` also sends a cohort statistic."""

from flwr.app import Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    metrics = {"num-examples": 10.0}
    if str(context.node_config.get("site-name", "")) == str(context.run_config["leak-site"]):
        metrics["mean_patient_age"] = 61.5  # what the egress guard must stop
    content = RecordDict({"arrays": msg.content.array_records["arrays"], "metrics": MetricRecord(metrics)})
    return Message(content, reply_to=msg)
