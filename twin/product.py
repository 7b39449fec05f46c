"""Switching the running product (recipe): a configuration action on a running line, so it is checked, bounded and
audited like a mode change.

Why not just assign ``control.product``: the loops' bias estimates, staged moves and open proposals belong to the old
product's targets; acting on them after a recipe change would move setpoints towards the wrong targets. A closed loop
drops to advisory first (an engineer re-engages it on the new product, as after any change of the line).
"""

from __future__ import annotations

from twin.auth import Principal, Role
from twin.control import ControlError, Controller


async def switch_product(controller: Controller, product: str, who: Principal, why: str = "") -> str:
    """Make ``product`` the running one; returns the previous. Engineer role; unknown products are refused."""
    if not who.allows(Role.engineer):
        raise ControlError("switching the product needs the engineer role", 403)
    settings = controller.recommender.settings
    if product not in settings.products:
        raise ControlError(f"unknown product {product!r}; the line description has {sorted(settings.products)}", 422)
    before = settings.product
    if product == before:
        return before
    if controller.mode == "closed_loop":
        await controller.set_mode("advisory", who, f"product change {before} -> {product}")
    for rec in controller.list("proposed", limit=10_000):
        controller.reject(rec.id, who, f"product changed to {product}")
    settings.product = product
    rec_state = controller.recommender
    for state in (rec_state.biases, rec_state._staged, rec_state._last_x, rec_state.moves,  # noqa: SLF001
                  rec_state._holding):  # noqa: SLF001 - the old product's loop state
        state.clear()
    controller.audit.record("product", who.name, why or f"product {before or '(none)'} -> {product}",
                            target="product", before=before or None, after=product)
    return before
