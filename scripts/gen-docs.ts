// Regenerates the README tables that come from the code (manifest fields, lint rules).
import { readFileSync, writeFileSync } from 'node:fs';
import { lintRuleTable, manifestFieldTable, replaceSection } from '../src/manifest/docs.js';

const file = new URL('../README.md', import.meta.url);
let doc = readFileSync(file, 'utf8');
doc = replaceSection(doc, 'manifest-fields', manifestFieldTable());
doc = replaceSection(doc, 'lint-rules', lintRuleTable());
writeFileSync(file, doc);
console.log('README.md tables regenerated');
