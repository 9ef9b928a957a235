"""app.context.WaitSlots: a process's wait slots, shared between tenants."""

from __future__ import annotations

from contextlib import ExitStack

from app.context import WaitSlots


def claim_all(slots: WaitSlots, tenant: str, count: int, stack: ExitStack) -> list[bool]:
    return [stack.enter_context(slots.claim(tenant)) for _ in range(count)]


def test_one_tenant_holds_at_most_its_share_and_another_still_waits() -> None:
    slots = WaitSlots(threads=8, tenant_share=0.5, tenants=2)  # 6 slots, 3 each
    with ExitStack() as stack:
        alice = claim_all(slots, "alice", 6, stack)
        bob = claim_all(slots, "bob", 4, stack)

        assert alice == [True] * 3 + [False] * 3
        assert bob == [True] * 3 + [False]
        assert (slots.held("alice"), slots.held("bob")) == (3, 3)
    assert (slots.held("alice"), slots.held("bob")) == (0, 0)


def test_the_process_total_still_bounds_every_tenant() -> None:
    slots = WaitSlots(threads=8, tenant_share=0.5, tenants=3)
    with ExitStack() as stack:
        taken = [claim_all(slots, tenant, 3, stack) for tenant in ("a", "b", "c")]

        assert [sum(t) for t in taken] == [3, 3, 0]  # 6 slots: the last 2 threads stay free


def test_a_single_tenant_may_use_every_slot() -> None:
    slots = WaitSlots(threads=8, tenant_share=0.5, tenants=1)
    with ExitStack() as stack:
        assert claim_all(slots, "default", 7, stack) == [True] * 6 + [False]


def test_a_released_slot_can_be_claimed_again() -> None:
    slots = WaitSlots(threads=8, tenant_share=0.5, tenants=2)
    with ExitStack() as stack:
        claim_all(slots, "alice", 3, stack)
        with slots.claim("alice") as refused:
            assert not refused
    with slots.claim("alice") as again:
        assert again
