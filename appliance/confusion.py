"""Treatments against their known mechanism of action (MoA): a confusion matrix.

A treatment (compound at a concentration) counts once, under its known MoA (the row) and the
class the model gave it (the column): the mean of its wells' probabilities, as treatments.csv
has it. The MoA comes from the fields (a `Metadata_MoA` column, where the plate map or the MoA
table gave one) or, for a screen, from a MoA table (compound, concentration, moa) given to
`report --moa`. Without any known MoA there is no matrix.
"""

from __future__ import annotations

from collections import Counter
from html import escape

MOA_COLUMN = "Metadata_MoA"


def treatment_moa(fields: list[dict]) -> dict[tuple, str]:
    """(compound, concentration) -> MoA, from field rows that carry one."""
    known = {}
    for row in fields:
        moa = row.get(MOA_COLUMN)
        if moa not in (None, ""):
            known[(row["Metadata_Compound"], row["Metadata_Concentration"])] = str(moa)
    return known


def confusion_html(calls: list[tuple[str, str]], labels) -> str:
    """The matrix as a table: rows the known MoA, columns the class given; the diagonal is right.

    calls: one (known MoA, class given) per treatment. "" when there are none."""
    if not calls:
        return ""
    counts = Counter(calls)
    truths = [
        *[label for label in labels if any(t == label for t, _ in calls)],
        *sorted({t for t, _ in calls} - set(labels)),
    ]
    given = [*labels, *sorted({g for _, g in calls} - set(labels))]
    right = sum(n for (t, g), n in counts.items() if t == g)
    head = "".join(f'<th class="rot"><span>{escape(g)}</span></th>' for g in given)
    rows = []
    for truth in truths:
        total = sum(counts[(truth, g)] for g in given)
        cells = []
        for g in given:
            n = counts[(truth, g)]
            style = ""
            if n:
                alpha = 0.15 + 0.85 * n / total
                colour = "0,114,178" if g == truth else "213,94,0"  # blue right, vermilion wrong
                ink = ";color:white" if alpha > 0.6 else ""
                style = f' style="background:rgba({colour},{alpha:.2f}){ink}"'
            cells.append(f'<td class="n"{style}>{n or ""}</td>')
        rows.append(f'<tr><th>{escape(truth)}</th>{"".join(cells)}<td class="n">{total}</td></tr>')
    return (
        f'<p class="muted">{len(calls)} treatments of known MoA; {right} ({right / len(calls):.0%}) given their MoA '
        "as class. Rows: the known MoA; columns: the class the model gave the treatment.</p>"
        f'<table class="confusion"><thead><tr><th>known MoA \\ class</th>{head}<th>total</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
