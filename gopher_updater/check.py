"""`gopher-updater check`: a one-shot preflight an operator runs before trusting a deployment.

It asks exactly what the daemon will need at the halt — the chain (height, current plan, ETA),
push access to the repository, the current plan's source image — and prints a summary a human
can act on. Exit 0 when all is good, 1 otherwise.
"""

from __future__ import annotations

import trio

from gopher_updater import cadence, rule_records
from gopher_updater.chain import ChainClient
from gopher_updater.chain_errors import ChainError
from gopher_updater.config import Config
from gopher_updater.daemon import registry_client
from gopher_updater.duration import format_seconds
from gopher_updater.lcd_pool import open_pool
from gopher_updater.model import Height, PlanAnswer
from gopher_updater.registry_errors import RegistryError
from gopher_updater.urls import redact_url

OK, BAD, INFO, WARN = "ok  ", "FAIL", "    ", "warn"


async def run_check(cfg: Config, out: list[str]) -> bool:
    good = True

    def say(mark: str, text: str) -> None:
        out.append(f"[{mark}] {text}")

    registry_url = redact_url(cfg.registry_url, keep_path=True)
    say(OK, f"configuration valid (repository {cfg.repo_path} on {registry_url})")
    plan = None
    async with open_pool(cfg) as pool:
        # Every endpoint of RPC_URL, at once; each named scheme://host:port, never userinfo.
        answers: dict[str, tuple[PlanAnswer, Height] | str] = {}

        async def ask(label: str, chain: ChainClient) -> None:
            try:
                with trio.fail_after(3 * cfg.request_timeout):
                    answers[label] = (await chain.current_plan(), await chain.latest_height())
            except (ChainError, trio.TooSlowError) as exc:
                answers[label] = str(exc) or "timed out"

        async with trio.open_nursery() as nursery:
            for label, chain in pool.members():
                nursery.start_soon(ask, label, chain)
        answered = {k: v for k, v in answers.items() if not isinstance(v, str)}
        top = max((h.block for _, h in answered.values()), default=None)
        enough = len(answered) >= cfg.rpc_quorum
        for label, endpoint in zip(pool.labels, cfg.lcd_endpoints, strict=True):
            found = answers[label]
            shown = redact_url(endpoint.url, keep_path=True)  # never userinfo
            if isinstance(found, str):
                say(WARN if enough else BAD, f"chain {shown}: {found}")
            else:
                lag = (
                    ""
                    if top is None or found[1].block == top
                    else f" ({top - found[1].block} behind)"
                )
                say(OK, f"chain {shown}: height {found[1].block}{lag}")
        if not enough:
            say(
                BAD,
                f"{len(answered)} of {len(answers)} LCD endpoints answered; "
                f"RPC_QUORUM is {cfg.rpc_quorum}",
            )
            good = False
        else:
            lead = max(answered, key=lambda k: answered[k][1].block)
            answer, first = answered[lead]
            chain = dict(pool.members())[lead]
            plan = answer.plan
            samples = [(trio.current_time(), first.block)]
            try:
                if plan is not None and first.block < plan.height:
                    # Two heights a few blocks apart give a block time for the ETA.
                    with trio.move_on_after(min(cfg.request_timeout, 12.0)):
                        while True:
                            await trio.sleep(1.0)
                            later = await chain.latest_height()
                            if later.block > first.block:
                                samples.append((trio.current_time(), later.block))
                                break
            except ChainError:
                pass
            if plan is None:
                say(INFO, "no upgrade plan is scheduled")
            else:
                per_block = cadence.block_time(samples)
                left = plan.height - first.block
                eta = f", ETA ~{format_seconds(left * per_block)}" if per_block and left > 0 else ""
                say(OK, f"current plan {plan.name!r} at height {plan.height} ({left} blocks{eta})")
    async with registry_client(cfg) as registry:
        try:
            with trio.fail_after(3 * cfg.request_timeout):
                await registry.check_push_access()
        except (RegistryError, trio.TooSlowError) as exc:
            say(BAD, f"registry {registry_url}: {exc or 'timed out'}")
            return False
        say(OK, f"registry {registry_url}: credentials accepted with push scope")
        if plan is not None:
            tags = rule_records.TagScheme(cfg.source_prefix, cfg.target_prefix).for_plan(plan)
            if isinstance(tags, rule_records.InvalidPlanName):
                say(BAD, f"plan name cannot become a tag: {tags.reason}")
                return False
            try:
                with trio.fail_after(3 * cfg.request_timeout):
                    source = await registry.digest(tags.source)
                    target = await registry.digest(tags.target)
            except (RegistryError, trio.TooSlowError) as exc:
                say(BAD, f"registry lookup failed: {exc or 'timed out'}")
                return False
            if source is None:
                say(BAD, f"source image {cfg.repo_path}:{tags.source} is missing: push it")
                good = False
            else:
                say(OK, f"source image {tags.source} present ({source})")
            if target is not None and target != source:
                note = "will be replaced" if cfg.overwrite_target else "CONFLICT at the halt"
                say(
                    BAD if not cfg.overwrite_target else INFO,
                    f"target {tags.target} already holds {target} ({note})",
                )
                good = good and cfg.overwrite_target
            elif target is not None:
                say(OK, f"target {tags.target} already at the source digest")
    return good


def main(cfg: Config) -> int:
    out: list[str] = []
    good = trio.run(run_check, cfg, out)
    print("\n".join(out))
    print("all good" if good else "problems found (see FAIL lines)")
    return 0 if good else 1
