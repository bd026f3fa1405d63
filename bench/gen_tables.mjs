#!/usr/bin/env node
// Regenerates conversions/converters/tables.py from the tools the converter is measured with:
//   - the commands and environments the pinned MathLive accepts (mathlive/ssr validateLatex),
//   - for each such symbol command, whether MathJax (the judge) draws it like the MathML
//     character it stands for, as <mi> and as <mo>,
//   - the characters MathLive or MathJax refuse as they are in math mode,
//   - the operator properties of MathJax's MathML operator dictionary (movablelimits,
//     largeop, stretchy, accent).
// The first line of the output names the MathLive and MathJax versions it was made from
// (tests/test_dev_tooling.py compares it with frontend/package.json). Run `make tables`, or
// from the repository root after `make vendor` and `make judge-deps`:
//   node bench/gen_tables.mjs [JUDGE_DIR [OUT]]
// JUDGE_DIR defaults to ../shared/tools/judge, OUT to conversions/converters/tables.py.
import fs from 'fs';
import path from 'path';
import {createRequire} from 'module';
import {pathToFileURL} from 'url';

const judgeDir = path.resolve(process.argv[2] || '../shared/tools/judge');
const outPath = path.resolve(process.argv[3] || 'conversions/converters/tables.py');
const version = file => JSON.parse(fs.readFileSync(file, 'utf8')).version;
const mathliveVersion = version('frontend/node_modules/mathlive/package.json');
const mathlive = await import(pathToFileURL(path.resolve('frontend/node_modules/mathlive/mathlive-ssr.min.mjs')).href);
const {judge, renderTeX} = await import(pathToFileURL(path.join(judgeDir, 'lib.mjs')).href);
const require = createRequire(path.join(judgeDir, 'package.json'));
const mathjaxVersion = version(require.resolve('mathjax-full/package.json'));
const {OPTABLE} = require('mathjax-full/js/core/MmlTree/OperatorDictionary.js');
const {validateLatex, convertLatexToMathMl} = mathlive;

const accepted = s => { try { return validateLatex(s).length === 0; } catch (e) { return false; } };

// Every word in MathLive's source is a candidate command name; MathLive itself decides.
const source = fs.readFileSync('frontend/node_modules/mathlive/mathlive.mjs', 'utf8');
const words = [...new Set(source.match(/[A-Za-z]+/g))].sort();
const notCommands = new Set(['constructor', 'toString', 'hasOwnProperty', 'propertyIsEnumerable',
  'valueOf', 'isPrototypeOf', 'toLocaleString']);
const forms = w => [`\\${w}`, `\\${w}{x}`, `\\${w}(`, `\\${w}{x}{y}`, `\\${w}.`];
const commands = words.filter(w => !notCommands.has(w) && forms(w).some(accepted));
for (let c = 33; c < 127; c++) {
  const ch = String.fromCharCode(c);
  if (!/[A-Za-z]/.test(ch) && forms(ch).some(accepted)) commands.push(ch);
}
if (accepted('a\\ b')) commands.push(' ');
if (accepted('\\left(x\\right)')) commands.push('left', 'right');
if (accepted('\\left(x\\middle|y\\right)')) commands.push('middle');
const environments = words.filter(w => !notCommands.has(w) &&
  [`\\begin{${w}}x\\end{${w}}`, `\\begin{${w}}{c}x\\end{${w}}`].some(accepted));

// Symbol commands: the character MathLive maps each to, checked against MathJax's drawing.
const named = {lt: '<', gt: '>', amp: '&', ne: '\u2260', nbsp: '\u00a0'};
const decode = s => s.replace(/&#x([0-9a-fA-F]+);/g, (_, h) => String.fromCodePoint(parseInt(h, 16)))
  .replace(/&#([0-9]+);/g, (_, d) => String.fromCodePoint(parseInt(d, 10)))
  .replace(/&([a-zA-Z]+);/g, (e, n) => named[n] ?? e);
const symbols = [];
// MathLive reports (console.info) each command it cannot turn into MathML; those are skipped anyway.
const consoleInfo = console.info;
console.info = () => {};
for (const w of commands) {
  if (!/^[A-Za-z]+$/.test(w)) continue;
  let mml;
  try { mml = convertLatexToMathMl('\\' + w); } catch (e) { continue; }
  const m = /^<(mi|mo|mn)>([^<]*)<\/\1>$/.exec(mml);
  if (!m) continue;
  const ch = decode(m[2]);
  if ([...ch].length !== 1 || ch.codePointAt(0) < 0x80) continue;
  const verdict = {};
  for (const el of ['mi', 'mo']) {
    const src = `<math xmlns="http://www.w3.org/1998/Math/MathML"><mi>x</mi><${el}>${m[2]}</${el}><mi>y</mi></math>`;
    verdict[el] = judge(src, `x\\${w}{}y`).verdict;
  }
  symbols.push([ch, w, verdict.mi, verdict.mo]);
}


// Characters MathLive refuses as they are in math mode (it maps some to text-only commands).
const rejectedChars = [];
for (const [from, to] of [[0x21, 0xD7FF], [0xE000, 0xFFFD], [0x1D400, 0x1D7FF]]) {
  for (let cp = from; cp <= to; cp++) {
    const ch = String.fromCodePoint(cp);
    if ('$%{}\\#&^_~'.includes(ch)) continue;  // LaTeX specials, always escaped
    let ok;
    try { ok = validateLatex(ch).length === 0; mathlive.convertLatexToMarkup(ch); } catch (e) { ok = false; }
    if (!ok) rejectedChars.push(ch);
  }
}
console.info = consoleInfo;

// Characters MathJax's TeX input cannot take as they are in math mode (it throws).
const mathjaxRejected = [];
for (const [from, to] of [[0xA0, 0x33FF], [0xFB00, 0xFFFD], [0x1D400, 0x1D7FF]]) {
  for (let cp = from; cp <= to; cp++) {
    const ch = String.fromCodePoint(cp);
    let ok;
    try { ok = !renderTeX(ch, false).error; } catch (e) { ok = false; }
    if (!ok) mathjaxRejected.push(ch);
  }
}

const ops = {movablelimits: new Set(), largeop: new Set(), stretchy: new Set(), accent: new Set()};
for (const form of ['prefix', 'infix', 'postfix']) {
  for (const [ch, def] of Object.entries(OPTABLE[form])) {
    const props = def[3] || {};
    for (const k of Object.keys(ops)) if (props[k] === true) ops[k].add(ch);
  }
}

// Python string literals as ruff format writes them ('"' in single quotes, \u/\U escapes).
const pyChar = ch => {
  const cp = ch.codePointAt(0);
  if (ch === '\\' || ch === '"') return '\\' + ch;
  if (cp > 0xFFFF) return '\\U' + cp.toString(16).padStart(8, '0');
  if (cp >= 0x7F || cp < 0x20) return '\\u' + cp.toString(16).padStart(4, '0');
  return ch;
};
const py = s => (s === '"' ? `'"'` : '"' + [...s].map(pyChar).join('') + '"');
const pySet = xs => 'frozenset(\n    {\n' + [...xs].sort().map(x => `        ${py(x)},\n`).join('') + '    }\n)';
let out = `"""Generated by bench/gen_tables.mjs from MathLive ${mathliveVersion} and MathJax ${mathjaxVersion}: do not edit."""\n\n`;
out += '# Commands (without the backslash) that MathLive\'s validateLatex accepts in math mode.\n';
out += `MATHLIVE_COMMANDS = ${pySet(new Set(commands))}\n\n`;
out += `MATHLIVE_ENVIRONMENTS = ${pySet(environments)}\n\n`;
out += '# (character, command, judge verdict as <mi>, judge verdict as <mo>) for MathLive symbol commands.\n';
out += 'SYMBOL_COMMANDS = (\n' + symbols.map(s => `    (${s.map(py).join(', ')}),\n`).join('') + ')\n\n';
out += `MATHLIVE_REJECTED_CHARACTERS = ${pySet(rejectedChars)}\n\n`;
out += '# Characters MathJax (the judge) cannot draw as they are in math mode.\n';
out += `MATHJAX_REJECTED_CHARACTERS = ${pySet(mathjaxRejected)}\n\n`;
out += '# Operator properties from MathJax\'s MathML operator dictionary.\n';
for (const [k, v] of Object.entries(ops)) out += `${k.toUpperCase()}_OPERATORS = ${pySet(v)}\n\n`;
fs.writeFileSync(outPath, out.trimEnd() + '\n');
console.log(`commands ${commands.length}, environments ${environments.length}, symbols ${symbols.length}`);
