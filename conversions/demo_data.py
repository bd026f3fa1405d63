"""A realistic K-12 demo question bank, generated deterministically from templates.

Korean subjects and grades as a Korean school uses them (중1..고3; 수학, 수학I, 수학II,
미적분, 확률과 통계, 기하), Korean question text, and presentation MathML of varied
structure: fractions, roots, powers and indices, systems with cases, matrices, vectors and
arcs, angles, sums, integrals, limits, logs, inequalities and intervals. Parameters come
from small sets, and a few formulas (the quadratic formula, sin²θ + cos²θ = 1, ...) recur
under different questions, so many formulas repeat across the bank as in a real one; the
result cache is measured on that.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from html import escape

QUESTION_COUNT = 360
SEED = 20240301
NS = "http://www.w3.org/1998/Math/MathML"
MINUS = "\u2212"


# --- MathML building blocks ------------------------------------------------------------


def math(*parts: str, display: str = "") -> str:
    attr = f' display="{display}"' if display else ""
    return f'<math xmlns="{NS}"{attr}>{"".join(parts)}</math>'


def mi(name: str, variant: str = "") -> str:
    attr = f' mathvariant="{variant}"' if variant else ""
    return f"<mi{attr}>{escape(name)}</mi>"


def mn(value: object) -> str:
    return f"<mn>{value}</mn>"


def mo(op: str, **attrs: str) -> str:
    extra = "".join(f' {k}="{v}"' for k, v in attrs.items())
    return f"<mo{extra}>{escape(op)}</mo>"


def mtext(text: str) -> str:
    return f"<mtext>{escape(text)}</mtext>"


def row(*parts: str) -> str:
    return f"<mrow>{''.join(parts)}</mrow>"


def frac(num: str, den: str) -> str:
    return f"<mfrac>{row(num)}{row(den)}</mfrac>"


def sqrt(*parts: str) -> str:
    return f"<msqrt>{''.join(parts)}</msqrt>"


def root(base: str, index: str) -> str:
    return f"<mroot>{row(base)}{index}</mroot>"


def sup(base: str, exp: str) -> str:
    return f"<msup>{base}{row(exp)}</msup>"


def sub(base: str, index: str) -> str:
    return f"<msub>{base}{row(index)}</msub>"


def subsup(base: str, low: str, high: str) -> str:
    return f"<msubsup>{base}{row(low)}{row(high)}</msubsup>"


def under(base: str, low: str) -> str:
    return f"<munder>{base}{row(low)}</munder>"


def underover(base: str, low: str, high: str) -> str:
    return f"<munderover>{base}{row(low)}{row(high)}</munderover>"


def over(base: str, accent: str) -> str:
    return f'<mover accent="true">{row(base)}{mo(accent)}</mover>'


def paren(*parts: str, left: str = "(", right: str = ")") -> str:
    return row(mo(left), *parts, mo(right))


def num(value: int) -> str:
    return row(mo(MINUS), mn(-value)) if value < 0 else mn(value)


def signed(value: int) -> str:
    """A number after an operator: "+ 3" or "− 3"."""
    return mo(MINUS) + mn(-value) if value < 0 else mo("+") + mn(value)


def fraction(p: int, q: int) -> str:
    body = frac(mn(abs(p)), mn(q))
    return row(mo(MINUS), body) if p < 0 else body


def poly(coefs: list[int], var: str = "x") -> str:
    """coefs from the highest power down: [1, -3, 2] -> x^2 - 3x + 2."""
    parts: list[str] = []
    degree = len(coefs) - 1
    for i, c in enumerate(coefs):
        power = degree - i
        if c == 0:
            continue
        if c < 0:
            parts.append(mo(MINUS))
        elif parts:
            parts.append(mo("+"))
        a = abs(c)
        coef = "" if a == 1 and power > 0 else mn(a)
        if power == 0:
            parts.append(mn(a))
        elif power == 1:
            parts.append(coef + mi(var))
        else:
            parts.append(coef + sup(mi(var), mn(power)))
    return row(*parts) if parts else mn(0)


def matrix(rows: list[list[int]]) -> str:
    cells = "".join("<mtr>" + "".join(f"<mtd>{num(v)}</mtd>" for v in r) + "</mtr>" for r in rows)
    return paren(f"<mtable>{cells}</mtable>")


def cases(*lines: str) -> str:
    body = "".join(f"<mtr><mtd>{line}</mtd></mtr>" for line in lines)
    return row(mo("{"), f'<mtable columnalign="left">{body}</mtable>')


def points(*names: str) -> str:
    return row(*(mi(n) for n in names))


def degrees(value: int) -> str:
    return row(mn(value), mo("\u00b0"))


def eq(*parts: str) -> str:
    return row(*parts)


THETA, PI, INF = mi("\u03b8"), mi("\u03c0"), mi("\u221e")
DX = row(mi("d"), mi("x"))


# --- templates: (rng) -> (unit, text, mathml) ------------------------------------------

Template = Callable[[random.Random], tuple[str, str, str]]


def t_fraction_sum(rng):
    a, b = rng.choice([(1, 2), (2, 3), (3, 4), (1, 3)])
    c, d = rng.choice([(1, 6), (5, 12), (1, 4)])
    text = rng.choice(["다음을 계산하시오.", "다음 식의 값을 기약분수로 나타내시오."])
    return "정수와 유리수", text, math(fraction(a, b), mo("+"), fraction(c, d))


def t_integer_ops(rng):
    a, b, c = rng.choice([(-3, 5, -2), (4, -7, 1), (-6, -2, 3)])
    expr = row(paren(num(a)), mo("+"), paren(num(b)), mo(MINUS), paren(num(c)))
    return "정수와 유리수", "다음을 계산하시오.", math(expr)


def t_linear_equation(rng):
    a, b, c = rng.choice([(2, 3, 11), (3, -4, 5), (5, 1, 16), (4, -2, 10)])
    text = rng.choice(["다음 일차방정식을 푸시오.", "일차방정식의 해를 구하시오."])
    return "일차방정식", text, math(poly([a, b]), mo("="), mn(c))


def t_angle(rng):
    a = rng.choice([35, 40, 55])
    expr = row(mo("\u2220"), points("A", "O", "B"), mo("="), degrees(a), mo(","))
    expr += row(mo("\u2220"), points("B", "O", "C"), mo("="), mn(2), mi("x"))
    text = f"그림에서 ∠AOC = 90°일 때, x의 값을 구하시오. (∠AOB = {a}°)"
    return "기본 도형", text, math(expr)


def t_coordinates(rng):
    a, b = rng.choice([(2, -3), (-1, 4), (3, 5)])
    expr = row(mi("A"), paren(num(a), mo(","), num(b)))
    text = rng.choice(
        ["점 A가 속하는 사분면을 구하시오.", "점 A를 x축에 대하여 대칭이동한 점의 좌표를 구하시오."]
    )
    return "좌표평면과 그래프", text, math(expr)


def t_system(rng):
    (a, b, c), (d, e, f) = rng.choice(
        [((1, 1, 5), (2, -1, 1)), ((2, 3, 12), (1, -1, 1)), ((1, 2, 7), (3, -1, 7))]
    )
    first = row(poly([a, 0]), mo("+") if b > 0 else mo(MINUS), _coef(b) + mi("y"), mo("="), mn(c))
    second = row(poly([d, 0]), mo("+") if e > 0 else mo(MINUS), _coef(e) + mi("y"), mo("="), mn(f))
    text = rng.choice(["다음 연립방정식을 푸시오.", "연립방정식의 해 (x, y)를 구하시오."])
    return "연립방정식", text, math(cases(first, second))


def _coef(value: int) -> str:
    return "" if abs(value) == 1 else mn(abs(value))


def t_exponent_law(rng):
    m, n, k = rng.choice([(2, 3, 4), (3, 2, 5), (4, 2, 3)])
    expr = row(sup(mi("a"), mn(m)), mo("\u00d7"), sup(paren(sup(mi("a"), mn(n))), mn(2)))
    expr += row(mo("\u00f7"), sup(mi("a"), mn(k)))
    return "지수법칙", "다음 식을 간단히 하시오.", math(expr)


def t_linear_inequality(rng):
    a, b, c, op = rng.choice([(3, -2, 7, ">"), (2, 5, 1, "\u2264"), (4, -1, 11, "\u2265")])
    text = rng.choice(
        ["다음 일차부등식을 푸시오.", "부등식을 만족하는 가장 작은 정수 x를 구하시오."]
    )
    return "일차부등식", text, math(poly([a, b]), mo(op), mn(c))


def t_linear_function(rng):
    a, b = rng.choice([(2, -1), (-3, 4), (1, 2)])
    text = rng.choice(
        [
            "일차함수의 그래프의 기울기와 y절편을 구하시오.",
            "다음 일차함수의 그래프가 지나지 않는 사분면을 구하시오.",
        ]
    )
    return "일차함수", text, math(mi("y"), mo("="), poly([a, b]))


def t_repeating_decimal(rng):
    digit = rng.choice([3, 6, 7])
    expr = row(mn("0."), over(mn(digit), "\u02d9"))
    return "유리수와 순환소수", "다음 순환소수를 기약분수로 나타내시오.", math(expr)


def t_square_roots(rng):
    a, b = rng.choice([(2, 8), (3, 12), (5, 20)])
    expr = row(sqrt(mn(a)), mo("\u00d7"), sqrt(mn(b)))
    return "제곱근과 실수", "다음을 계산하시오.", math(expr)


def t_rationalise(rng):
    a, b = rng.choice([(6, 3), (4, 2), (10, 5)])
    text = "다음 수의 분모를 유리화하시오."
    return "제곱근과 실수", text, math(frac(mn(a), sqrt(mn(b))))


def t_factorise(rng):
    b, c = rng.choice([(-5, 6), (1, -12), (7, 12), (-2, -8)])
    text = rng.choice(["다음 식을 인수분해하시오.", "다항식을 두 일차식의 곱으로 나타내시오."])
    return "인수분해", text, math(poly([1, b, c]))


QUADRATIC_FORMULA = math(
    mi("x"),
    mo("="),
    frac(
        row(
            mo(MINUS),
            mi("b"),
            mo("\u00b1"),
            sqrt(sup(mi("b"), mn(2)), mo(MINUS), mn(4), mi("a"), mi("c")),
        ),
        row(mn(2), mi("a")),
    ),
)


def t_quadratic_formula(rng):
    a, b, c = rng.choice([(1, -3, 1), (2, 5, 1), (1, 4, 2)])
    text = f"이차방정식 {_plain_poly([a, b, c])} = 0의 해를 근의 공식을 이용하여 구하시오."
    return "이차방정식", text, QUADRATIC_FORMULA


def _plain_poly(coefs: list[int]) -> str:
    names = {2: "x²", 1: "x", 0: ""}
    out = ""
    for power, c in zip((2, 1, 0), coefs, strict=True):
        if c == 0:
            continue
        sign = "-" if c < 0 else ("+" if out else "")
        mag = "" if abs(c) == 1 and power else str(abs(c))
        out += (
            f" {sign} {mag}{names[power]}".replace("  ", " ")
            if out
            else f"{sign}{mag}{names[power]}"
        )
    return out.strip()


def t_quadratic_equation(rng):
    a, b, c = rng.choice([(1, -3, 1), (2, 5, 1), (1, 4, 2), (1, -6, 9)])
    return "이차방정식", "다음 이차방정식을 푸시오.", math(poly([a, b, c]), mo("="), mn(0))


def t_vertex_form(rng):
    a, p, q = rng.choice([(2, 1, -3), (-1, -2, 4), (3, 3, 1)])
    expr = row(mi("y"), mo("="), num(a) if abs(a) != 1 else (mo(MINUS) if a < 0 else ""))
    expr += row(sup(paren(mi("x"), signed(-p)), mn(2)), signed(q))
    text = rng.choice(
        [
            "이차함수의 그래프의 꼭짓점의 좌표를 구하시오.",
            "이차함수의 그래프의 축의 방정식을 구하시오.",
        ]
    )
    return "이차함수", text, math(expr)


def t_trig_ratio(rng):
    a, b = rng.choice([(30, 60), (45, 45), (60, 30)])
    expr = row(mi("sin"), mo("\u2061"), degrees(a), mo("+"), mi("cos"), mo("\u2061"), degrees(b))
    return "삼각비", "다음 식의 값을 구하시오.", math(expr)


def t_arc(rng):
    r, angle = rng.choice([(6, 60), (4, 90), (9, 120)])
    expr = row(over(points("A", "B"), "\u2322"), mo("="), frac(row(mn(angle)), mn(360)))
    expr += row(mo("\u00d7"), mn(2), PI, mo("\u00d7"), mn(r))
    text = f"반지름의 길이가 {r}cm이고 중심각의 크기가 {angle}°인 부채꼴의 호 AB의 길이를 구하시오."
    return "원의 성질", text, math(expr)


def t_expand(rng):
    a, b = rng.choice([(2, 3), (1, -4), (-5, 2)])
    expr = row(paren(mi("x"), signed(a)), paren(mi("x"), signed(b)))
    return "다항식의 연산", "다음 식을 전개하시오.", math(expr)


def t_complex(rng):
    a, b, c, d = rng.choice([(2, 3, 1, -1), (1, -2, 3, 4), (3, 1, 2, 2)])
    i = mi("i")
    left = paren(mn(a), mo("+") if b > 0 else mo(MINUS), _coef(b), i)
    right = paren(mn(c), mo("+") if d > 0 else mo(MINUS), _coef(d), i)
    text = rng.choice(
        ["다음을 계산하여 a+bi 꼴로 나타내시오. (단, i²=−1)", "복소수의 곱을 구하시오."]
    )
    return "복소수", text, math(left, right)


def t_discriminant(rng):
    k = rng.choice([2, 3, 4])
    expr = row(poly([1, -2 * k, 0]), mo("+"), mi("k"), mo("="), mn(0))
    text = "이차방정식이 서로 다른 두 실근을 갖도록 하는 실수 k의 값의 범위를 구하시오."
    return "이차방정식과 판별식", text, math(expr)


def t_quadratic_inequality(rng):
    r1, r2 = rng.choice([(2, 3), (-1, 4), (1, 5)])
    expr = row(poly([1, -(r1 + r2), r1 * r2]), mo("<"), mn(0))
    text = rng.choice(["다음 이차부등식을 푸시오.", "이차부등식의 해를 구간으로 나타내시오."])
    return "이차부등식", text, math(expr)


def t_matrix(rng):
    a = rng.choice([[[1, 2], [3, 4]], [[2, -1], [0, 3]], [[1, 0], [2, 1]]])
    b = rng.choice([[[0, 1], [1, 0]], [[2, 1], [-1, 3]]])
    op = rng.choice(["+", ""])
    expr = row(matrix(a), mo(op) if op else "", matrix(b))
    text = "다음 행렬의 합을 구하시오." if op else "다음 행렬의 곱을 구하시오."
    return "행렬", text, math(expr)


def t_absolute(rng):
    a, b = rng.choice([(2, 3), (-1, 5), (4, 1)])
    expr = row(mo("|"), mi("x"), signed(-a), mo("|"), mo("<"), mn(b))
    return "여러 가지 부등식", "다음 부등식을 푸시오.", math(expr)


def t_interval(rng):
    a, b, c, closed = rng.choice([(-2, 3, 1, True), (0, 5, 2, False), (1, 4, 0, True)])
    first = paren(num(a), mo(","), num(b), left="[" if closed else "(", right=")")
    second = paren(num(c), mo(","), INF, left="(", right=")")
    text = rng.choice(["두 구간 A, B에 대하여 A ∩ B를 구하시오.", "A ∪ B를 구간으로 나타내시오."])
    return "집합과 명제", text, math(mi("A"), mo("="), first, mo(","), mi("B"), mo("="), second)


def t_rational_exponent(rng):
    p, q = rng.choice([(1, 2), (2, 3), (3, 4)])
    expr = row(sup(mi("a"), frac(mn(p), mn(q))), mo("\u00d7"), root(sup(mi("a"), mn(2)), mn(3)))
    text = "다음 식을 간단히 하시오. (단, a > 0)"
    return "지수", text, math(expr)


def t_log(rng):
    (b1, x1), (b2, x2) = rng.choice([((2, 8), (3, 9)), ((2, 16), (5, 25)), ((3, 27), (2, 4))])
    log = mi("log")
    expr = row(
        sub(log, mn(b1)), mo("\u2061"), mn(x1), mo("+"), sub(log, mn(b2)), mo("\u2061"), mn(x2)
    )
    return "로그", rng.choice(["다음 값을 구하시오.", "다음 식의 값을 계산하시오."]), math(expr)


def t_log_equation(rng):
    b, c = rng.choice([(2, 3), (3, 2)])
    expr = row(
        sub(mi("log"), mn(b)), mo("\u2061"), paren(mi("x"), mo(MINUS), mn(1)), mo("="), mn(c)
    )
    return "로그함수", "다음 방정식을 푸시오.", math(expr)


PYTHAGOREAN_IDENTITY = math(
    sup(mi("sin"), mn(2)),
    mo("\u2061"),
    THETA,
    mo("+"),
    sup(mi("cos"), mn(2)),
    mo("\u2061"),
    THETA,
    mo("="),
    mn(1),
)


def t_trig_identity(rng):
    text = rng.choice(
        [
            "θ가 제2사분면의 각이고 sin θ = 3/5일 때, 다음 관계를 이용하여 cos θ의 값을 구하시오.",
            "다음 등식이 성립함을 보이시오.",
            "tan θ = 2일 때, 다음 관계를 이용하여 cos²θ의 값을 구하시오.",
        ]
    )
    return "삼각함수", text, PYTHAGOREAN_IDENTITY


def t_trig_shift(rng):
    k = rng.choice([2, 3])
    expr = row(mi("sin"), paren(THETA, mo("+"), frac(PI, mn(k))))
    return "삼각함수", "다음 식을 간단히 하시오.", math(expr)


def t_sigma(rng):
    a, b, n = rng.choice([(2, -1, 10), (3, 1, 5), (1, 2, 20)])
    expr = row(
        underover(mo("\u2211"), row(mi("k"), mo("="), mn(1)), mn(n)), paren(poly([a, b], "k"))
    )
    return "수열의 합", "다음 값을 구하시오.", math(expr, display="block")


def t_geometric(rng):
    a, r = rng.choice([(3, 2), (2, 3), (5, 2)])
    expr = row(
        sub(mi("a"), mi("n")),
        mo("="),
        mn(a),
        mo("\u00b7"),
        sup(mn(r), row(mi("n"), mo(MINUS), mn(1))),
    )
    text = rng.choice(
        ["일반항이 다음과 같은 등비수열의 제5항을 구하시오.", "다음 수열의 공비를 구하시오."]
    )
    return "등비수열", text, math(expr)


def t_limit_function(rng):
    a = rng.choice([1, 2, 3])
    expr = under(mi("lim"), row(mi("x"), mo("\u2192"), mn(a)))
    body = frac(poly([1, 0, -(a * a)]), poly([1, -a]))
    return "함수의 극한", "다음 극한값을 구하시오.", math(expr, body)


def t_derivative(rng):
    coefs = rng.choice([[1, 0, -3, 0], [2, -3, 0, 1], [1, 1, 1, 0]])
    text = rng.choice(
        ["함수 f(x)의 도함수를 구하시오.", "f′(1)의 값을 구하시오.", "함수의 극댓값을 구하시오."]
    )
    expr = row(mi("f"), paren(mi("x")), mo("="), poly(coefs))
    return "미분", text, math(expr)


def t_definite_integral(rng):
    a, b, coefs = rng.choice([(0, 2, [1, 0, 1]), (1, 3, [3, -2]), (-1, 1, [1, 0, 0])])
    expr = row(subsup(mo("\u222b"), num(a), mn(b)), paren(poly(coefs)), DX)
    return "정적분", "다음 정적분의 값을 구하시오.", math(expr, display="block")


def t_sequence_limit(rng):
    a, b, c, d = rng.choice([(2, 1, 1, 3), (3, -1, 6, 1), (1, 5, 2, -1)])
    expr = under(mi("lim"), row(mi("n"), mo("\u2192"), INF))
    body = frac(poly([a, b], "n"), poly([c, d], "n"))
    return "수열의 극한", "다음 극한값을 구하시오.", math(expr, body)


def t_series(rng):
    p, q = rng.choice([(1, 2), (1, 3), (2, 3)])
    expr = underover(mo("\u2211"), row(mi("n"), mo("="), mn(1)), INF)
    return "급수", "다음 급수의 합을 구하시오.", math(expr, sup(paren(frac(mn(p), mn(q))), mi("n")))


def t_log_integral(rng):
    e = mi("e")
    text = rng.choice(
        [
            "다음 정적분의 값을 구하시오.",
            "곡선 y = 1/x와 x축 및 두 직선 x = 1, x = e로 둘러싸인 부분의 넓이를 구하시오.",
        ]
    )
    return "여러 가지 적분법", text, math(subsup(mo("\u222b"), mn(1), e), frac(mn(1), mi("x")), DX)


def t_exp_derivative(rng):
    k = rng.choice([2, 3])
    expr = row(
        mi("f"),
        paren(mi("x")),
        mo("="),
        sup(mi("e"), row(mn(k), mi("x"))),
        mi("ln"),
        mo("\u2061"),
        mi("x"),
    )
    return "여러 가지 미분법", "함수 f(x)의 도함수를 구하시오.", math(expr)


def t_combination(rng):
    n, r, letter = rng.choice([(5, 2, "C"), (6, 3, "C"), (5, 2, "P"), (7, 2, "P")])
    scripts = f"{mi(letter, 'normal')}{mn(r)}<none/><mprescripts/>{mn(n)}<none/>"
    expr = f"<mmultiscripts>{scripts}</mmultiscripts>"
    text = rng.choice(
        ["다음 값을 구하시오.", "서로 다른 공 중에서 뽑는 경우의 수를 나타낸 식의 값을 구하시오."]
    )
    return "순열과 조합", text, math(expr)


PROBABILITY_UNION = math(
    mi("P"),
    paren(mi("A"), mo("\u222a"), mi("B")),
    mo("="),
    mi("P"),
    paren(mi("A")),
    mo("+"),
    mi("P"),
    paren(mi("B")),
    mo(MINUS),
    mi("P"),
    paren(mi("A"), mo("\u2229"), mi("B")),
)


def t_probability(rng):
    pa, pb, pab = rng.choice([("1/2", "1/3", "1/6"), ("0.4", "0.5", "0.2"), ("1/3", "1/4", "1/12")])
    text = f"P(A) = {pa}, P(B) = {pb}, P(A∩B) = {pab}일 때, P(A∪B)를 구하시오."
    return "확률의 뜻과 활용", text, PROBABILITY_UNION


def t_normal(rng):
    m, s = rng.choice([(50, 4), (170, 5), (60, 10)])
    expr = row(mi("X"), mo("~"), mi("N"), paren(mn(m), mo(","), sup(mn(s), mn(2))))
    text = rng.choice(
        [
            "P(X ≤ m + σ)의 값을 표준정규분포표를 이용하여 구하시오.",
            "확률변수 X의 표준편차를 구하시오.",
        ]
    )
    return "정규분포", text, math(expr)


def t_vector(rng):
    (a1, a2), (b1, b2) = rng.choice([((2, 3), (1, -1)), ((-1, 4), (3, 0)), ((1, 2), (2, 1))])
    va, vb = over(mi("a"), "\u2192"), over(mi("b"), "\u2192")
    expr = row(
        va,
        mo("="),
        paren(num(a1), mo(","), num(a2)),
        mo(","),
        vb,
        mo("="),
        paren(num(b1), mo(","), num(b2)),
    )
    text = rng.choice(["두 벡터의 내적을 구하시오.", "|a⃗ + b⃗|의 값을 구하시오."])
    return "벡터의 연산", text, math(expr)


def t_position_vector(rng):
    expr = row(
        over(points("A", "B"), "\u2192"),
        mo("="),
        over(points("O", "B"), "\u2192"),
        mo(MINUS),
        over(points("O", "A"), "\u2192"),
    )
    text = rng.choice(
        [
            "다음 관계를 이용하여 벡터 AB의 성분을 구하시오.",
            "위치벡터를 이용하여 다음 등식이 성립함을 보이시오.",
        ]
    )
    return "평면벡터", text, math(expr)


def t_ellipse(rng):
    a, b = rng.choice([(5, 3), (4, 2), (3, 2)])
    expr = row(
        frac(sup(mi("x"), mn(2)), mn(a * a)),
        mo("+"),
        frac(sup(mi("y"), mn(2)), mn(b * b)),
        mo("="),
        mn(1),
    )
    text = rng.choice(["다음 타원의 두 초점의 좌표를 구하시오.", "타원의 장축의 길이를 구하시오."])
    return "이차곡선", text, math(expr)


def t_distance_3d(rng):
    (x1, y1, z1), (x2, y2, z2) = rng.choice(
        [((1, 2, 3), (4, 6, 3)), ((0, 0, 0), (2, 3, 6)), ((1, -1, 2), (3, 1, 3))]
    )
    expr = row(
        mover_bar("AB"),
        mo("="),
        sqrt(_gap(x1, x2), mo("+"), _gap(y1, y2), mo("+"), _gap(z1, z2)),
    )
    text = f"좌표공간의 두 점 A({x1}, {y1}, {z1}), B({x2}, {y2}, {z2}) 사이의 거리를 구하시오."
    return "공간좌표", text, math(expr)


def _gap(a: int, b: int) -> str:
    return sup(paren(mn(b), mo(MINUS), num(a)), mn(2))


def mover_bar(letters: str) -> str:
    return "<mover>" + points(*letters) + mo("\u00af") + "</mover>"


# (subject, grade, templates): the bank cycles through these in order.
CURRICULUM: list[tuple[str, str, list[Template]]] = [
    ("수학", "중1", [t_fraction_sum, t_integer_ops, t_linear_equation, t_angle, t_coordinates]),
    (
        "수학",
        "중2",
        [t_system, t_exponent_law, t_linear_inequality, t_linear_function, t_repeating_decimal],
    ),
    (
        "수학",
        "중3",
        [
            t_square_roots,
            t_rationalise,
            t_factorise,
            t_quadratic_formula,
            t_quadratic_equation,
            t_vertex_form,
            t_trig_ratio,
            t_arc,
        ],
    ),
    (
        "수학",
        "고1",
        [
            t_expand,
            t_complex,
            t_discriminant,
            t_quadratic_inequality,
            t_matrix,
            t_absolute,
            t_interval,
            t_quadratic_formula,
        ],
    ),
    (
        "수학I",
        "고2",
        [
            t_rational_exponent,
            t_log,
            t_log_equation,
            t_trig_identity,
            t_trig_shift,
            t_sigma,
            t_geometric,
        ],
    ),
    ("수학II", "고2", [t_limit_function, t_derivative, t_definite_integral]),
    (
        "미적분",
        "고3",
        [t_sequence_limit, t_series, t_log_integral, t_exp_derivative, t_trig_identity],
    ),
    ("확률과 통계", "고3", [t_combination, t_probability, t_normal]),
    ("기하", "고3", [t_vector, t_position_vector, t_ellipse, t_distance_3d]),
]


def demo_questions(count: int = QUESTION_COUNT) -> Iterator[dict]:
    """The demo bank as import records; the same records on every call."""
    rng = random.Random(SEED)
    slots = [(subject, grade, t) for subject, grade, templates in CURRICULUM for t in templates]
    for number in range(1, count + 1):
        subject, grade, template = slots[(number - 1) % len(slots)]
        unit, text, mathml = template(rng)
        yield {
            "question_id": f"DEMO-{number:04d}",
            "subject": subject,
            "grade": grade,
            "text": text,
            "mathml": mathml,
            "metadata": {"source": "demo", "unit": unit, "difficulty": 1 + (number * 7) % 5},
        }
