"""Ship the `default` label schema, so labeling works on a fresh install.

Unit/topic values follow the Korean K-12 mathematics curriculum (elementary, middle and
high school units); they are data, edited in the admin like any other schema. The
fields are frozen here on purpose: a later change to the default belongs in the admin
(which bumps the schema's version), not in this migration.
"""

from django.db import migrations

UNITS = [
    # elementary school
    "자연수의 덧셈과 뺄셈",
    "자연수의 곱셈과 나눗셈",
    "분수",
    "소수",
    "분수와 소수의 계산",
    "약수와 배수",
    "평면도형",
    "입체도형",
    "길이, 시간, 들이, 무게",
    "둘레, 넓이, 부피",
    "규칙과 대응",
    "비와 비율",
    "자료의 정리와 그래프",
    # middle school
    "소인수분해",
    "정수와 유리수",
    "유리수와 순환소수",
    "제곱근과 실수",
    "문자와 식",
    "일차방정식",
    "연립일차방정식",
    "일차부등식",
    "다항식의 곱셈과 인수분해",
    "이차방정식",
    "좌표평면과 그래프",
    "일차함수",
    "이차함수",
    "기본 도형과 작도",
    "삼각형과 사각형의 성질",
    "도형의 닮음",
    "피타고라스 정리",
    "삼각비",
    "원의 성질",
    "경우의 수",
    "대푯값과 산포도",
    "상관관계",
    # high school
    "다항식의 연산",
    "나머지정리와 인수분해",
    "복소수와 이차방정식",
    "여러 가지 방정식과 부등식",
    "도형의 방정식",
    "집합과 명제",
    "함수와 그래프",
    "순열과 조합",
    "지수와 로그",
    "지수함수와 로그함수",
    "삼각함수",
    "수열",
    "함수의 극한과 연속",
    "미분",
    "적분",
    "확률",
    "통계",
    "이차곡선",
    "벡터",
    "공간도형과 공간좌표",
    "기타",
]

SKILLS = ["계산", "개념 이해", "추론", "문제 해결", "자료 해석"]

INSTRUCTIONS = (
    "You label K-12 mathematics questions from a Korean question bank. Read the question "
    "text and its formulas, then choose the curriculum unit the question mainly tests, "
    "rate its difficulty for a student of that unit, name the main skill it asks for, and "
    "give a few keywords (in the language of the question). If no unit fits, use 기타."
)

FIELDS = [
    {
        "name": "unit",
        "type": "choice",
        "choices": UNITS,
        "description": "The curriculum unit (topic) the question mainly tests.",
    },
    {
        "name": "difficulty",
        "type": "integer",
        "min": 1,
        "max": 5,
        "description": "1 very easy, 2 easy, 3 average, 4 hard, 5 very hard.",
    },
    {
        "name": "skill_type",
        "type": "choice",
        "choices": SKILLS,
        "description": "The main skill the question asks for.",
    },
    {
        "name": "keywords",
        "type": "keywords",
        "max_items": 5,
        "description": "Up to 5 short keywords: concepts, formulas or methods used.",
    },
]


def create_default(apps, schema_editor):
    LabelSchema = apps.get_model("conversions", "LabelSchema")
    LabelSchema.objects.get_or_create(
        name="default", defaults={"instructions": INSTRUCTIONS, "fields": FIELDS, "version": 1}
    )


def delete_default(apps, schema_editor):
    # Only an unused default goes; one that jobs refer to stays (PROTECT).
    LabelSchema = apps.get_model("conversions", "LabelSchema")
    LabelSchema.objects.filter(name="default", jobs__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [("conversions", "0004_reconciler_schedule")]
    operations = [migrations.RunPython(create_default, delete_default)]
