/**
 * The public API as declared: the main entry exports at most 150 names, each
 * with TSDoc on its declaration; every subpath in package.json `exports` has
 * ESM, CommonJS and types, built from a tsup entry.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { expect, it } from 'vitest';
import tsupConfig from '../../tsup.config.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const MAX_MAIN_NAMES = 150;

/** Every name `entry` exports, with whether its declaration carries TSDoc. */
function exportedNames(entry: string): { name: string; documented: boolean }[] {
  const program = ts.createProgram([root + entry], { module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, target: ts.ScriptTarget.ES2022, noEmit: true });
  const checker = program.getTypeChecker();
  const module = checker.getSymbolAtLocation(program.getSourceFile(root + entry)!)!;
  return checker.getExportsOfModule(module).map((s) => {
    const target = s.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(s) : s;
    const decl = target.declarations?.[0];
    const documented = target.getDocumentationComment(checker).length > 0 || (decl !== undefined && ts.getJSDocTags(decl).length > 0);
    return { name: s.name, documented };
  });
}

it(`the main entry exports at most ${MAX_MAIN_NAMES} names, each with TSDoc`, () => {
  const names = exportedNames('src/index.ts');
  expect(names.length).toBeGreaterThan(50);
  expect(names.length).toBeLessThanOrEqual(MAX_MAIN_NAMES);
  expect(names.filter((n) => !n.documented).map((n) => n.name)).toEqual([]);
});

it('every package.json export has import, require and types, each built from a tsup entry', () => {
  const pkg = JSON.parse(readFileSync(root + 'package.json', 'utf8')) as { exports: Record<string, unknown> };
  const libraryEntries = Object.keys((tsupConfig as { entry: Record<string, string> }[])[0].entry);
  const subpaths = Object.entries(pkg.exports).filter(([k]) => k !== './package.json');
  expect(subpaths.map(([k]) => k).sort()).toEqual(['.', './ring', './spec', './testing', './vhost-user']);
  for (const [key, value] of subpaths) {
    const name = key === '.' ? 'index' : key.slice(2);
    expect(libraryEntries, key).toContain(name);
    expect(value).toEqual({
      import: { types: `./dist/${name}.d.ts`, default: `./dist/${name}.js` },
      require: { types: `./dist/${name}.d.cts`, default: `./dist/${name}.cjs` },
    });
  }
});
