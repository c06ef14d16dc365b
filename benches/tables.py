"""The text and markdown tables of benches.run, benches.torch_train and benches.scaling.

    fixed(value)        a number in about 3 significant digits, "—" for None
    shape_columns()     the shape columns that lead every table
    table(rows, cols, left, markdown)  rows (dicts) through cols = [(header, row -> text)]: aligned
                        text columns (the first `left` left-aligned, the others right-aligned) or a
                        GitHub markdown table
    render(header, lines, left, markdown)  the same from the header and the lines of text themselves
    markdown_line(cells)   one markdown table row, "| a | b |"
    print_notes(lines)     the footnotes under a table
"""

__all__ = ["fixed", "shape_columns", "table", "render", "markdown_line", "print_notes"]


def fixed(value, suffix=""):
    """About 3 significant digits, never an exponent: 0.123, 1.23, 12.3, 123, 1234; None -> "—"."""
    if value is None:
        return "—"
    decimals = 0 if value >= 100 else 1 if value >= 10 else 2 if value >= 1 else 3
    return f"{value:.{decimals}f}{suffix}"


def shape_columns():
    """The first two columns of every table of rows with "shape", "T", "B", "I", "H"."""
    return [("shape", lambda r: r["shape"]),
            ("T×B×I×H", lambda r: f"{r['T']}×{r['B']}×{r['I']}×{r['H']}")]


def markdown_line(cells):
    return "| " + " | ".join(cells) + " |"


def render(header, lines, left, markdown=False):
    """header and lines (lists of strings) as aligned text, the first `left` columns left-aligned and
    the others right-aligned, under a rule of dashes; or as a GitHub markdown table, aligned alike."""
    if markdown:
        align = ["---" if i < left else "---:" for i in range(len(header))]
        return "\n".join(markdown_line(line) for line in [header, align] + lines)
    widths = [max(len(line[i]) for line in [header] + lines) for i in range(len(header))]

    def fmt(line):
        return "  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))

    return "\n".join([fmt(header), fmt(["-" * w for w in widths])] + [fmt(line) for line in lines])


def table(rows, cols, left, markdown=False):
    """The rows through cols = [(header, row -> text)], as render() lays them out."""
    return render([h for h, _ in cols], [[text(r) for _, text in cols] for r in rows], left, markdown)


def print_notes(lines, markdown=False):
    """The footnotes under a table: a markdown list, or indented lines."""
    for line in lines:
        print(f"- {line}" if markdown else f"  {line}")
