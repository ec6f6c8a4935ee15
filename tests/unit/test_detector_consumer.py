"""Pure helpers of the detector's consumer loop."""

from __future__ import annotations

from nats.aio.msg import Msg

from services.detector.consumer import FETCH_BYTES_TARGET, delivery_of, next_fetch_size


def test_fetch_grows_while_small_and_full():
    assert next_fetch_size(100, 1000, 100, 1_000) == 200
    assert next_fetch_size(800, 1000, 800, 1_000) == 1000


def test_fetch_keeps_size_when_not_full():
    assert next_fetch_size(100, 1000, 3, 1_000) == 100


def test_fetch_shrinks_over_byte_target():
    assert next_fetch_size(1000, 1000, 1000, 4 * FETCH_BYTES_TARGET) == 250
    assert next_fetch_size(1, 1000, 1, 10 * FETCH_BYTES_TARGET) == 1


def test_delivery_read_from_reply_subject():
    msg = Msg(_client=None, subject="metrics.production.checkout",
              reply="$JS.ACK.TRAVI_METRICS.detector.3.1234.77.1796399035171574321.9", data=b"{}")
    assert delivery_of(msg) == (1234, 3)


def test_delivery_with_domain_uses_metadata():
    reply = "$JS.ACK.hub.ACCHASH.TRAVI_METRICS.detector.2.55.9.1796399035171574321.0.token"
    msg = Msg(_client=None, subject="metrics.production.checkout", reply=reply, data=b"{}")
    assert delivery_of(msg) == (55, 2)
