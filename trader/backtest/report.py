"""The backtest's text report.
"""
from __future__ import annotations



from polymm.trader.backtest.runner import Result

def _fmt_t(t: float) -> str:
    return f"t+{t:8.3f}s"


def render_text(result: Result) -> str:
    out: list[str] = []
    for w in result.warnings:
        out.append(f"config warning: {w}")
    for win in result.windows:
        ws = win["window_start"]
        out.append(f"window {ws} .. {win['window_end']}")
        events = [e for e in result.events if e["window_start"] == ws]
        out.append(f"  orders ({len([e for e in events if e['action'] == 'place'])} placed):")
        for e in events:
            flags = " post_only" if e["post_only"] else ""
            out.append(
                f"    {_fmt_t(e['t'])} {e['action']:<9} {e['id']:<7} {e['strategy']} {e['leg']:<4} {e['side']:<4} "
                f"{e['size']:>8.2f} @ {e['price']:<6g} {e['type']}{flags} {e['role']}: {e['reason']}"
            )
        out.append(f"  fills ({len(win['fills'])}):")
        for f in win["fills"]:
            out.append(
                f"    {_fmt_t(f['t'])} {f['id']:<7} {f['strategy']} {f['leg']:<4} {f['side']:<4} {f['size']:>8.2f} @ "
                f"{f['price']:<6g} {f['role']} fee {f['fee']:.4f} ({f['order_role']})"
            )
        out.append("  positions at the end:")
        for p in win["positions"]:
            dust = " (dust)" if p["dust"] else ""
            out.append(f"    {p['strategy']} {p['leg']:<4} {p['shares']:.2f} @ {p['avg_price']:.4f}{dust} -> payout {p['payout']:.4f}")
        if not win["positions"]:
            out.append("    none")
        out.append(f"  resolution: {win['winner'] or 'undetermined'} ({win['how']})")
        for strategy, s in win["pnl"].items():
            out.append(
                f"  pnl {strategy}: bought {s['bought']:.4f} sold {s['sold']:.4f} fees {s['fees']:.4f} "
                f"payout {s['payout']:.4f} net {s['net']:+.4f}"
            )
    total = result.pnl()
    out.append(f"lines {result.lines}, decisions {result.decisions}, windows {len(result.windows)}")
    out.append("pnl: " + (", ".join(f"{k} {v:+.4f}" for k, v in total.items()) or "no trades") + f"; total {sum(total.values()):+.4f}")
    return "\n".join(out) + "\n"
