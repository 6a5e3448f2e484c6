"""The private mosquitto the demo, the benchmarks and the tests start (``edgestream_tools.broker``)."""

import sys
from pathlib import Path

import paho.mqtt.client as mqtt

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "agent"))
from linktools import Subscriber, wait_until

from edgestream_tools.broker import Mosquitto


def test_a_persistent_session_and_its_queue_survive_a_restart(tmp_path):
    # What the outage tests and the link bench rely on: a subscriber with a persistent session
    # (clean_session=False, a fixed client id) gets, after a broker restart, the QoS 1 messages
    # published while it was away. As root, mosquitto switches to its own user, which could not
    # save the sessions into the test's private folder: the restart forgot them.
    broker = Mosquitto(tmp_path).start()
    try:
        sub = Subscriber(broker, ["t/#"], client_id="keeper", clean=False)
        sub.close()
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="pub")
        pub.connect(broker.host, broker.port)
        pub.loop_start()
        try:
            for i in range(5):
                pub.publish("t/x", b"m%d" % i, qos=1).wait_for_publish(5)
        finally:
            pub.loop_stop()
            pub.disconnect()
        broker.restart()
        assert "Error saving" not in broker.log.read_text(), broker.log.read_text()[-2000:]
        sub = Subscriber(broker, ["t/#"], client_id="keeper", clean=False)
        try:
            assert wait_until(lambda: len(sub.on("t/x")) == 5, 10), sub.on("t/x")
            assert sub.on("t/x") == [b"m%d" % i for i in range(5)]
        finally:
            sub.close()
    finally:
        broker.stop()
