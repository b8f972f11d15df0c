"""Envelope codecs, control messages, the pipeline's queues and the heartbeat slots."""
from __future__ import annotations

import decimal
import multiprocessing
import os
from pathlib import Path

import orjson
import pytest

from mxarchiverd.config import Config, ProcessingConfig, Secret, SourceConfig
from mxarchiverd.pipeline.channels import (
    END_OF_STREAM, EnvelopeError, PipelineQueues, Reconfigure, Stop, control_pipe, decode,
    decode_control, encode, encode_control, is_end, send_control,
)
from mxarchiverd.pipeline.heartbeat import STAT_KEYS, HeartbeatBoard

PIPELINE = ("poller", "enricher", "dbwriter")


class TestEnvelope:
    def test_round_trip_adds_and_removes_the_version(self) -> None:
        message = {"kind": "events", "events": [{"event_id": "$a", "n": 1, "x": None}], "cursor": {"pos": 7}}
        data = encode(message)
        assert orjson.loads(data)["v"] == 1
        assert decode(data) == message

    def test_an_attachment_travels_after_the_envelope_as_it_is(self) -> None:
        attachment = '[{"body": "two\nlines, \\"quoted\\" ü"}]'.encode()
        data = encode({"kind": "rows", "rows": [], "attachment": attachment})
        assert data.endswith(b"\n" + attachment), "not escaped into the envelope"
        assert decode(data) == {"kind": "rows", "rows": [], "attachment": attachment}
        assert "attachment" not in decode(encode({"kind": "rows", "rows": []}))

    @pytest.mark.parametrize("message", [{"kind": "rows", "attachment": "[]"}, {"kind": "rows", "attachment": [1]}])
    def test_an_attachment_must_be_bytes(self, message: dict) -> None:
        with pytest.raises(EnvelopeError, match="attachment is .*, not bytes"):
            encode(message)

    def test_an_attachment_field_inside_the_envelope_is_refused(self) -> None:
        with pytest.raises(EnvelopeError, match="attachment field"):
            decode(b'{"v": 1, "kind": "rows", "attachment": "[]"}')

    def test_end_of_stream(self) -> None:
        assert orjson.loads(END_OF_STREAM) == {"v": 1, "kind": "end"}
        assert is_end(decode(END_OF_STREAM))
        assert not is_end({"kind": "events"})

    @pytest.mark.parametrize("message", [
        {"events": []}, {"kind": 3}, {"kind": "end"}, {"kind": "events", "v": 2},
    ])
    def test_malformed_messages_fail_at_the_producer(self, message: dict) -> None:
        with pytest.raises(EnvelopeError):
            encode(message)

    @pytest.mark.parametrize("value", [decimal.Decimal("1.5"), {1, 2}, 2**70, object()])
    def test_non_json_values_fail_at_the_producer_with_the_kind(self, value: object) -> None:
        with pytest.raises(EnvelopeError, match="'events' is not JSON-native"):
            encode({"kind": "events", "value": value})

    @pytest.mark.parametrize("data", [b"{", b"[1]", b'{"kind": "events"}', b'{"v": 2, "kind": "events"}',
                                      b'{"v": 1}', b'{"v": 1, "kind": 5}'])
    def test_unreadable_envelopes_are_refused(self, data: bytes) -> None:
        with pytest.raises(EnvelopeError):
            decode(data)


class TestControl:
    def test_round_trip(self) -> None:
        config = Config(processing=ProcessingConfig(batch_size=9))
        assert decode_control(encode_control(Stop())) == Stop()
        message = decode_control(encode_control(Reconfigure(config, 4)))
        assert message == Reconfigure(config, 4)

    @pytest.mark.parametrize("envelope", [{"v": 2, "kind": "stop"}, {"v": 1, "kind": "restart"},
                                          {"v": 1, "kind": "reconfigure", "config": {}}, "stop"])
    def test_unknown_or_foreign_messages_are_refused(self, envelope: object) -> None:
        with pytest.raises(EnvelopeError):
            decode_control(envelope)

    def test_through_a_pipe_including_secrets(self) -> None:
        reader, writer = control_pipe()
        config = Config(source=SourceConfig(synapse_db_url=Secret("postgresql://u:pw@h/db")))
        assert send_control(writer, Reconfigure(config, 2))
        received = decode_control(reader.recv())
        assert isinstance(received, Reconfigure) and received.config == config
        reader.close()
        writer.close()

    def test_sending_to_a_gone_child_returns_false(self) -> None:
        reader, writer = control_pipe()
        reader.close()
        assert send_control(writer, Stop()) is False
        writer.close()


class TestPipelineQueues:
    def test_each_edge_has_one_producer_and_one_consumer(self) -> None:
        queues = PipelineQueues(multiprocessing.get_context("spawn"), PIPELINE)
        poller, enricher, dbwriter = (queues.for_role(role) for role in PIPELINE)
        assert poller.inbox is None and dbwriter.outbox is None
        assert poller.outbox is enricher.inbox and enricher.outbox is dbwriter.inbox
        assert poller.outbox is not dbwriter.inbox
        assert queues.for_role("uploader").inbox is None and queues.for_role("uploader").outbox is None
        queues.close()

    def test_rebuilding_does_not_leak_descriptors(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        PipelineQueues(ctx, PIPELINE).close()  # the first one may start the resource tracker
        before = len(os.listdir("/proc/self/fd"))
        for _ in range(20):
            PipelineQueues(ctx, PIPELINE).close()
        assert len(os.listdir("/proc/self/fd")) <= before + 1

    def test_queues_carry_envelope_bytes(self) -> None:
        queues = PipelineQueues(multiprocessing.get_context("spawn"), PIPELINE, maxsize=2)
        outbox = queues.for_role("poller").outbox
        assert outbox is not None
        outbox.put(encode({"kind": "events", "events": []}))
        inbox = queues.for_role("enricher").inbox
        assert inbox is not None
        assert decode(inbox.get(timeout=5)) == {"kind": "events", "events": []}
        outbox.close()
        outbox.join_thread()


class TestHeartbeat:
    def test_slots_are_independent_and_reset(self) -> None:
        board = HeartbeatBoard(multiprocessing.get_context("spawn"), ("poller", "uploader"))
        poller, uploader = board.slot("poller"), board.slot("uploader")
        poller.beat(12.5)
        poller.mark_ready()
        poller.set_generation(3)
        poller.add_progress(5)
        poller.add_progress(2)
        assert (poller.last_beat, poller.ready, poller.generation, poller.progress) == (12.5, True, 3, 7)
        assert board.beats() == {"poller": 12.5, "uploader": 0.0}
        assert not uploader.ready
        poller.reset()
        assert (poller.last_beat, poller.ready, poller.generation, poller.progress) == (0.0, False, 0, 0)

    def test_stats_keep_known_numeric_keys_only(self) -> None:
        slot = HeartbeatBoard(multiprocessing.get_context("spawn"), ("dbwriter",)).slot("dbwriter")
        slot.write_stats({"archived": 1200, "lag": 0.5, "bogus": 3, "errors": "many"})  # type: ignore[dict-item]
        assert slot.stats() == {"archived": 1200.0, "lag": 0.5, "media_backlog": 0.0, "errors": 0.0, "media_dead": 0.0}
        assert set(slot.stats()) == set(STAT_KEYS)

    def test_a_slot_travels_to_a_spawned_child(self, tmp_path: Path) -> None:
        ctx = multiprocessing.get_context("spawn")
        board = HeartbeatBoard(ctx, ("poller", "uploader"))
        child = ctx.Process(target=_stamp, args=(board.slot("uploader"),))
        child.start()
        child.join(30)
        assert child.exitcode == 0
        assert board.slot("uploader").last_beat == 42.0 and board.slot("uploader").ready
        assert board.slot("poller").last_beat == 0.0


def _stamp(slot) -> None:  # type: ignore[no-untyped-def]
    slot.beat(42.0)
    slot.mark_ready()
