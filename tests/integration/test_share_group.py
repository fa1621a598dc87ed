"""Two sluice instances in one share_group split one stream: 10,000 messages delivered
exactly once in total, and both instances carried a share."""
import harness as h


def test_share_group(wd):
    mosq = h.Mosquitto(wd).start()
    kafka = h.MockKafka(wd)
    shared = "  share_group: edge\n"
    a = h.Sluice(wd, h.sluice_config(wd, "share-a", mosq.url, kafka.bootstrap,
                                     extra_mqtt=shared), "a").start()
    b = h.Sluice(wd, h.sluice_config(wd, "share-b", mosq.url, kafka.bootstrap,
                                     extra_mqtt=shared), "b").start()
    total = 10000
    check = h.Checker(kafka.bootstrap, ["telemetry.berlin"], expect=total, timeout=180,
                      extra=["--per-instance"])
    h.loadgen(mosq.url, total, devices=100, qos=1, rate=4000)
    res = check.result()
    assert a.stop() == 0 and b.stop() == 0
    assert res["distinct"] == total, res
    assert res["lost"] == 0, res
    assert res["duplicates"] == 0, res
    per = res["per_instance"]
    h.log(f"shares: {per}")
    assert per.get("share-a", 0) > 0 and per.get("share-b", 0) > 0, per
    assert per.get("share-a", 0) + per.get("share-b", 0) == total, per


if __name__ == "__main__":
    h.run(test_share_group)
