import re

import pytest

from conversions.engine.redact import redact
from conversions.sanitize import (
    latex_is_renderable,
    sanitize_mathml,
)

ATTACK = (
    '<math xmlns="http://www.w3.org/1998/Math/MathML" display="block">'
    "<semantics><mrow>"
    '<mi href="javascript:alert(1)" xlink:href="javascript:alert(2)">x</mi>'
    '<mo style="background:url(javascript:alert(3))" onclick="alert(4)" id="csrftoken">+</mo>'
    "<mfrac><mn>1</mn><mn>2</mn></mfrac>"
    "<script>alert(5)</script>"
    '<maction actiontype="statusline"><mi>y</mi><mtext>click me</mtext></maction>'
    '<mglyph src="javascript:alert(6)"/>'
    "</mrow>"
    '<annotation-xml encoding="text/html"><img src="x" onerror="alert(7)"></annotation-xml>'
    '<annotation encoding="application/x-tex">\\href{javascript:alert(8)}{x}</annotation>'
    "</semantics></math>"
)


def test_keeps_the_presentation_markup():
    clean = sanitize_mathml(ATTACK)
    assert clean == (
        '<math display="block"><semantics><mrow><mi>x</mi><mo>+</mo>'
        "<mfrac><mn>1</mn><mn>2</mn></mfrac></mrow></semantics></math>"
    )


@pytest.mark.parametrize(
    "needle",
    [
        "script",
        "href",
        "style",
        "onclick",
        "onerror",
        "annotation",
        "maction",
        "mglyph",
        "img",
        "javascript",
        "alert",
        "click me",
        "id=",
    ],
)
def test_drops_everything_active(needle):
    assert needle not in sanitize_mathml(ATTACK).lower()


@pytest.mark.parametrize(
    "payload",
    [
        # Namespace confusion (mutation XSS): content that is text in one parse and
        # markup in the next must not survive as an element.
        "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
        "<math><mi><svg><style><img src=x onerror=alert(1)></style></svg></mi></math>",
        '<math><mtext><form><mglyph><svg><mtext><textarea><path id="</textarea>'
        '<img onerror=alert(1) src=1>">',
        '<math><annotation-xml encoding="text/html"><style><img src=x onerror=alert(1)>'
        "</style></annotation-xml></math>",
        "<math><!--<img src=x onerror=alert(1)>--><mi>x</mi></math>",
        '<math><a xlink:href="javascript:alert(1)"><mi>x</mi></a></math>',
        "<math><mi>x</mi></math><iframe srcdoc='<script>alert(1)</script>'></iframe>",
        "<math><mi>a</mi><![CDATA[<img src=x onerror=alert(1)>]]></math>",
    ],
)
def test_namespace_confusion_payloads_leave_no_element_behind(payload):
    clean = sanitize_mathml(payload)
    tags = set(re.findall(r"<([a-zA-Z][\w-]*)", clean))
    assert clean.startswith("<math>")
    assert tags <= {"math", "mi", "mtext", "mrow"}
    assert "javascript:" not in clean


def test_fragments_and_prefixes_are_wrapped_in_math():
    assert sanitize_mathml("<mfrac><mi>a</mi><mi>b</mi></mfrac>") == (
        "<math><mfrac><mi>a</mi><mi>b</mi></mfrac></math>"
    )
    prefixed = (
        '<?xml version="1.0"?><m:math xmlns:m="http://www.w3.org/1998/Math/MathML">'
        "<m:msqrt><m:mn>2</m:mn></m:msqrt></m:math>"
    )
    assert sanitize_mathml(prefixed) == "<math><msqrt><mn>2</mn></msqrt></math>"


def test_entities_stay_characters():
    assert sanitize_mathml("<math><mo>&lt;</mo><mo>&minus;</mo></math>") == (
        "<math><mo>&lt;</mo><mo>\u2212</mo></math>"
    )


def test_oversized_input_shows_nothing(settings):
    settings.MATHCONV_MAX_MATHML_BYTES = 100
    assert sanitize_mathml("<math>" + "<mi>x</mi>" * 20 + "</math>") == ""
    assert sanitize_mathml("") == ""


def test_html_producing_latex_is_not_rendered():
    assert latex_is_renderable(r"\frac{1}{2}+\sqrt{x}")
    assert latex_is_renderable(r"\hrefx")  # a different (unknown) command name
    for latex in (
        r"\href{javascript:alert(1)}{x}",
        r"\url{http://example.com}",
        r"\htmlData{foo=bar}{x}",
        r"\class{a}{x}",
        r"\cssId{a}{x}",
        r"\htmlStyle{color:red}{x}",
    ):
        assert not latex_is_renderable(latex)


def test_keys_and_auth_headers_are_redacted():
    text = (
        "POST /v1/chat/completions\n"
        "Authorization: Bearer sk-proj-abcdefghijklmnopqrstuvwx\n"
        "api-key: 12345\n"
        '{"api_key": "sk-abcdefghijkl", "model": "gpt-4.1-mini"}\n'
        "token bearer eyJhbGciOi.abc.def and sk-live1234567890 at the end"
    )
    clean = redact(text)
    for secret in ("abcdefghijklmnopqrstuvwx", "12345", "sk-abcdefghijkl", "eyJhbGciOi", "sk-live"):
        assert secret not in clean
    assert "gpt-4.1-mini" in clean
    assert "POST /v1/chat/completions" in clean
