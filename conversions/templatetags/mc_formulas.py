"""Template filters that draw formulas (see conversions.admin.formulas for the rules)."""

from django import template

from conversions.admin.formulas import latex_html, mathml_html

register = template.Library()


@register.filter
def mc_mathml(mathml: str):
    """Sanitised MathML drawn by the browser ("–" when empty); no raw source."""
    return mathml_html(mathml or "", raw=False)


@register.filter
def mc_latex(latex: str):
    """LaTeX drawn by MathLive when latex_is_renderable accepts it; no raw source."""
    return latex_html(latex or "", raw=False)
