"""The producer's settings: the user's properties reach librdkafka, and the delivery
settings no property can change hold whatever they say.

librdkafka prints its whole configuration when `debug: conf` is set; sluice logs it
at debug level (linger.ms under its canonical name, queue.buffering.max.ms). With
linger.ms in kafka.properties the user's value is used; sluice's own default for
reconnect.backoff.max.ms (500) applies unless the user sets it too. Either way
enable.idempotence is true, acks (request.required.acks) is all (-1) and
message.timeout.ms is 0 (never)."""
import re

import harness as h


def producer_conf(wd, mosq, kafka, name, props):
    extra = "  properties:\n    debug: conf\n" + "".join(
        f"    {k}: \"{v}\"\n" for k, v in props.items())
    cfg = h.sluice_config(wd, name, mosq.url, kafka.bootstrap, extra_kafka=extra)
    with open(cfg) as f:
        text = f.read().replace("level: info", "level: debug")
    with open(cfg, "w") as f:
        f.write(text)
    sl = h.Sluice(wd, cfg, name=name).start()
    conf = {}

    def parsed():
        conf.clear()
        for m in re.finditer(r"\b([a-z][a-z.]+) = (\S+)", sl.log_text()):
            conf.setdefault(m.group(1), m.group(2))
        return "enable.idempotence" in conf and "message.timeout.ms" in conf
    h.wait_for(parsed, 30, f"{name}: librdkafka's configuration in the log")
    assert sl.stop() == 0
    return conf


def assert_delivery_settings(conf):
    assert conf["enable.idempotence"] == "true", conf
    assert conf["request.required.acks"] == "-1", conf
    assert conf["message.timeout.ms"] == "0", conf


def test_kafka_defaults(wd):
    mosq = h.Mosquitto(wd).start()
    kafka = h.MockKafka(wd)

    conf = producer_conf(wd, mosq, kafka, "defaults", {})
    assert conf["reconnect.backoff.max.ms"] == "500", conf
    assert_delivery_settings(conf)
    conf = producer_conf(wd, mosq, kafka, "tuned",
                         {"linger.ms": 7, "reconnect.backoff.max.ms": 3000})
    assert conf["queue.buffering.max.ms"] == "7", conf    # linger.ms's own name
    assert conf["reconnect.backoff.max.ms"] == "3000", conf
    assert_delivery_settings(conf)


if __name__ == "__main__":
    h.run(test_kafka_defaults)
