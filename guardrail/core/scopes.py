"""Which scopes a usage record counts towards, and the budget that governs each scope. Pure."""

from __future__ import annotations

from collections.abc import Sequence

from guardrail.core.models import Budget, UsageRecord

GLOBAL = "global"


class ScopeResolver:
    """An exact budget (`tenant:acme`) wins over a wildcard one (`tenant:*`) for the same scope."""

    def __init__(self, budgets: Sequence[Budget]) -> None:
        self.budgets = tuple(budgets)
        self._global = next((b for b in budgets if b.selector == GLOBAL), None)
        self._exact = {b.selector: b for b in budgets if b.selector != GLOBAL and not b.selector.endswith(":*")}
        self._wildcards = {b.selector[:-2]: b for b in budgets if b.selector.endswith(":*")}
        self._dimensions = sorted({s.partition(":")[0] for s in self._exact} | set(self._wildcards))

    def scopes_for(self, record: UsageRecord) -> list[tuple[str, Budget]]:
        out: list[tuple[str, Budget]] = []
        if self._global is not None:
            out.append((GLOBAL, self._global))
        for dim in self._dimensions:
            value = record.caller if dim == "caller" else record.metadata.get(dim)
            if not value:
                continue
            scope = f"{dim}:{value}"
            budget = self._exact.get(scope) or self._wildcards.get(dim)
            if budget is not None:
                out.append((scope, budget))
        return out

    def budget_for(self, scope: str) -> Budget | None:
        """The budget of a scope named by on-call or an alarm (`global`, `app:chat-api`)."""
        if scope == GLOBAL:
            return self._global
        return self._exact.get(scope) or self._wildcards.get(scope.partition(":")[0])
