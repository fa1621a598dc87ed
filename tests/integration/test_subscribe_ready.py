"""Sluice.start() returns only once the broker holds sluice's subscriptions, so a test
may publish at once and count on every message reaching Kafka.

Why. A broker drops a message that matches no subscription and still acknowledges
it to the publisher (mosquitto 2.0.11 without the MQTT 5 reason "no matching
subscribers": loadgen cannot tell). start() used to return at sluice's "connected" line, which sluice logs at
CONNACK, before it even asks Paho to subscribe: whenever the SUBSCRIBE reached
mosquitto late, a test's first messages were dropped before sluice could see them,
and the test reported them lost although nothing in sluice lost anything
(mqtt_messages_total = spool_appends_total = delivered, the spool empty).

How. sluice connects through a TCP relay that passes its CONNECT and the broker's
CONNACK at once but holds everything sluice sends after the CONNECT for HOLD seconds,
so the SUBSCRIBE reaches mosquitto HOLD seconds after the "connected" line. loadgen
publishes as soon as start() returns (in a fraction of HOLD); every message must
arrive."""
import socket
import threading
import time

import harness as h

HOLD = 2.0
TOTAL = 500


class SlowSubscribeRelay:
    """127.0.0.1:port -> the broker. On the first connection, the client's bytes
    after its first chunk (CONNECT) wait until HOLD seconds after that chunk."""

    def __init__(self, wd, upstream_port):
        wd.own(self)
        self.upstream = upstream_port
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(8)
        self.port = self.lsock.getsockname()[1]
        self.socks = [self.lsock]
        self.held = 0            # bytes that waited
        self.first = True

    def start(self):
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self):
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            u = socket.create_connection(("127.0.0.1", self.upstream))
            self.socks += [c, u]
            hold, self.first = self.first, False
            threading.Thread(target=self._pump, args=(c, u, hold), daemon=True).start()
            threading.Thread(target=self._pump, args=(u, c, False), daemon=True).start()

    def _pump(self, src, dst, hold):
        release = None
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if hold:
                    if release is None:
                        release = time.monotonic() + HOLD     # the CONNECT goes now
                    elif time.monotonic() < release:
                        self.held += len(data)
                        time.sleep(max(0.0, release - time.monotonic()))
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self):
        for s in self.socks:
            try:
                s.close()
            except OSError:
                pass


def test_subscribe_ready(wd):
    mosq = h.Mosquitto(wd).start()
    kafka = h.MockKafka(wd)
    relay = SlowSubscribeRelay(wd, mosq.port).start()
    cfg = h.sluice_config(wd, "subready", f"tcp://127.0.0.1:{relay.port}", kafka.bootstrap)
    sl = h.Sluice(wd, cfg)
    t0 = time.monotonic()
    sl.start()
    h.log(f"start() returned after {time.monotonic() - t0:.2f} s; relay held "
          f"{relay.held} byte(s) so far")
    check = h.Checker(kafka.bootstrap, ["telemetry.berlin"], expect=TOTAL, timeout=30)
    h.loadgen(mosq.url, TOTAL, devices=10, qos=1)
    res = check.result()
    assert relay.held > 0, "the relay held nothing: the test did not delay the SUBSCRIBE"
    assert sl.stop() == 0
    assert res["lost"] == 0, res
    assert res["distinct"] == TOTAL, res


if __name__ == "__main__":
    h.run(test_subscribe_ready)
