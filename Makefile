# Two commands on a fresh machine with python3 >= 3.11:
#   make demo   set up, load the demo bank, run a conversion job, serve the admin
#   make test   set up and run the whole suite (SQLite, then PostgreSQL when reachable)
#   make serve  the production stack on one machine, DEBUG off (gunicorn, two qclusters)
#   make test-fast   the inner loop: no browser tests, SQLite only
#   make gateway     the LiteLLM proxy the suite's third-party-server test uses (make test runs it)

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
MATHLIVE_VERSION := 0.111.1
VENDOR := static/vendor/mathlive
PORT ?= 8000
PG_URL ?= postgres://postgres@127.0.0.1:5432/mathconv
JUDGE := ../shared/tools/judge
# The LiteLLM proxy the suite runs a job through (tests/test_gateway.py), in its own venv.
# Pinned and checked: 1.82.7/1.82.8 were a supply-chain compromise (March 2026); this
# release predates it. The hash is PyPI's for the wheel; dependencies are pinned by
# mathconv_dev/gateway/constraints.txt. mathconv_dev/gateway/__init__.py names the same version.
LITELLM_VERSION := 1.80.10
LITELLM_SHA256 := 9b3e561efaba0eb1291cb1555d3dcb7283cf7f3cb65aadbcdb42e2a8765898c8
GATEWAY := var/gateway-venv

.PHONY: gateway demo serve test test-fast test-sqlite test-sqlite-database test-sqlite-others test-postgres test-postgres-if-reachable lint venv dev-venv vendor chromium judge-deps tables tables-check bench bench-converter bench-validator clean messages

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e .
	touch $@

$(VENV)/.dev-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[dev]'
	touch $(VENV)/.installed $@

venv: $(VENV)/.installed
dev-venv: $(VENV)/.dev-installed

# The gateway: the exact wheel, its hash checked, then its [proxy] extra at pinned versions;
# no .pth file may come with it but setuptools' (the compromised release hid one there).
$(GATEWAY)/.installed-$(LITELLM_VERSION): mathconv_dev/gateway/constraints.txt
	rm -rf $(GATEWAY) var/gateway-wheel
	$(PYTHON) -m venv $(GATEWAY)
	$(GATEWAY)/bin/pip download --quiet --no-deps --only-binary=:all: -d var/gateway-wheel litellm==$(LITELLM_VERSION)
	echo "$(LITELLM_SHA256)  var/gateway-wheel/litellm-$(LITELLM_VERSION)-py3-none-any.whl" | sha256sum --check --quiet
	$(GATEWAY)/bin/pip install --quiet -c mathconv_dev/gateway/constraints.txt "var/gateway-wheel/litellm-$(LITELLM_VERSION)-py3-none-any.whl[proxy]"
	@pth=$$(find $(GATEWAY) -name '*.pth' ! -name distutils-precedence.pth); \
	  if [ -n "$$pth" ]; then echo "unexpected .pth files in the gateway venv: $$pth"; exit 1; fi
	touch $@

gateway: $(GATEWAY)/.installed-$(LITELLM_VERSION)

# MathLive, vendored from npm at a pinned version and served as static files.
$(VENDOR)/mathlive.min.js: frontend/package.json
	cd frontend && npm ci --no-audit --no-fund --loglevel=error
	rm -rf $(VENDOR) && mkdir -p $(VENDOR)
	cp frontend/node_modules/mathlive/mathlive.min.js frontend/node_modules/mathlive/mathlive-static.css $(VENDOR)/
	cp -r frontend/node_modules/mathlive/fonts frontend/node_modules/mathlive/sounds $(VENDOR)/ 2>/dev/null || cp -r frontend/node_modules/mathlive/fonts $(VENDOR)/
	cp frontend/node_modules/mathlive/LICENSE.txt $(VENDOR)/ 2>/dev/null || true

vendor: $(VENDOR)/mathlive.min.js

# Debian's chromium for the browser tests (Playwright cannot download browsers here),
# a Korean font so that screenshots of the Korean admin are legible, and GNU gettext
# (the translation test extracts and compares msgids).
chromium:
	@{ command -v /usr/bin/chromium && fc-list | grep -qi nanum && command -v msgcmp; } >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium fonts-nanum gettext >/dev/null; }

judge-deps:
	@[ -d $(JUDGE)/node_modules ] || (cd $(JUDGE) && npm ci --no-audit --no-fund --loglevel=error)

# The converter's tables (conversions/converters/tables.py) from the pinned MathLive and the
# judge's MathJax; tests/test_dev_tooling.py checks the versions named in its first line.
tables: vendor judge-deps
	node bench/gen_tables.mjs $(JUDGE)

# Regenerate into var/ and compare with the committed tables (several minutes).
tables-check: vendor judge-deps
	mkdir -p var && node bench/gen_tables.mjs $(JUDGE) var/tables.py
	diff -u conversions/converters/tables.py var/tables.py

demo: venv vendor
	DEBUG=1 $(PY) manage.py migrate --noinput
	DEBUG=1 $(PY) manage.py demo --port $(PORT)

# DEBUG off: collectstatic, migrate, gunicorn + WhiteNoise, two qclusters; PostgreSQL and
# Redis on 127.0.0.1 when they answer, else SQLite and the ORM broker (mathconv/serve.py).
serve: venv vendor
	$(PY) -m mathconv.serve --port $(PORT)

test: dev-venv vendor chromium gateway
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(MAKE) --no-print-directory -j3 -Otarget test-sqlite-database test-sqlite-others test-postgres-if-reachable PG_ARGS='-m "not alone"'
	$(MAKE) --no-print-directory test-postgres-if-reachable PG_ARGS='-m alone'

# Three runs side by side (each has its own test database, tests/settings.py): the whole
# suite on SQLite in two halves, the tests that use the test database and the others
# (browser, own services, no database), and on PostgreSQL the first half, what can behave
# differently there (tests/conftest.py); then, alone on the machine, the suites whose
# faults are timed (the soak: 1 s timeouts). The runs mostly wait (on clusters, servers,
# a browser; about a third of their wall time is CPU), so three share two cores.
PG_ARGS ?=
test-postgres-if-reachable:
	@if $(PY) -c "import psycopg,os,sys; psycopg.connect(os.environ.get('DATABASE_URL') or '$(PG_URL)'.rsplit('/',1)[0]+'/postgres', connect_timeout=3).close()" 2>/dev/null; then \
	  $(MAKE) --no-print-directory test-postgres; \
	else echo "PostgreSQL not reachable: skipped the PostgreSQL run"; fi

# No browser, no PostgreSQL: the suite minus the Playwright tests, on SQLite.
test-fast: dev-venv
	env -u DATABASE_URL $(VENV)/bin/pytest -p no:cacheprovider -m "not browser"

test-sqlite:
	env -u DATABASE_URL $(VENV)/bin/pytest -p no:cacheprovider

# test-sqlite in two halves (make test runs them side by side).
test-sqlite-database:
	env -u DATABASE_URL $(VENV)/bin/pytest -p no:cacheprovider --database-tests-only

test-sqlite-others:
	env -u DATABASE_URL $(VENV)/bin/pytest -p no:cacheprovider --no-database-tests

test-postgres:
	DATABASE_URL=$${DATABASE_URL:-$(PG_URL)} $(VENV)/bin/pytest -p no:cacheprovider --database-tests-only $(PG_ARGS)

lint: dev-venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

messages: venv
	DEBUG=1 $(PY) manage.py makemessages -l ko --ignore=.venv --ignore=frontend --ignore=static --ignore=var --ignore=artifacts --ignore='*/node_modules/*'
	DEBUG=1 $(PY) manage.py compilemessages --ignore=.venv

# Converter speed, judged quality and MathLive acceptance on the dev corpus (installs the
# judge's node packages itself, in a copy under var/bench/ when its folder is read-only).
bench-converter: venv
	$(PY) bench/converter.py

# Wrong answers made from the dev references, judged, and how many the validator catches;
# false alarms on right answers (needs the judge's node packages: make judge-deps).
bench-validator: venv judge-deps
	$(PY) bench/validator.py

bench: dev-venv judge-deps
	$(PY) bench/converter.py
	$(PY) bench/validator.py
	$(PY) bench/engine.py
	$(PY) bench/import_questions.py
	$(PY) bench/admin.py

clean:
	rm -rf $(VENV) var frontend/node_modules $(VENDOR)
