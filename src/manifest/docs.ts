import { LINT_RULES } from './lint.js';
import { manifestJsonSchema } from './schema.js';

interface JsonSchemaNode {
  type?: string;
  const?: unknown;
  enum?: unknown[];
  items?: JsonSchemaNode;
  description?: string;
  properties?: Record<string, JsonSchemaNode>;
  required?: string[];
  format?: string;
}

function typeOf(n: JsonSchemaNode): string {
  if (n.const !== undefined) return `\`${JSON.stringify(n.const)}\``;
  if (n.enum !== undefined) return n.enum.map((v) => `\`${String(v)}\``).join(' \\| ');
  if (n.type === 'array') return `${n.items === undefined ? 'any' : typeOf(n.items)}[]`;
  if (n.format === 'date-time') return 'timestamp';
  return n.type ?? 'any';
}

/** The README's manifest field table, generated from the zod schema (a test keeps them equal). */
export function manifestFieldTable(): string {
  const schema = manifestJsonSchema() as JsonSchemaNode;
  const required = new Set(schema.required ?? []);
  const rows = Object.entries(schema.properties ?? {}).map(([name, node]) => {
    const t = node.type === 'array' && node.items?.type === 'object' ? 'object[]' : typeOf(node);
    return `| \`${name}\` | ${t} | ${required.has(name) ? 'yes' : 'no'} | ${(node.description ?? '').replaceAll('|', '\\|')} |`;
  });
  return ['| Field | Type | Required | Meaning |', '| --- | --- | --- | --- |', ...rows].join('\n');
}

/** The README's lint rule table. */
export function lintRuleTable(): string {
  const rows = Object.entries(LINT_RULES).map(
    ([code, [severity, text]]) => `| \`${code}\` | ${severity} | ${text} |`,
  );
  return ['| Code | Severity | Finding |', '| --- | --- | --- |', ...rows].join('\n');
}

/** Replace the text between `<!-- NAME:start -->` and `<!-- NAME:end -->`. */
export function replaceSection(doc: string, name: string, body: string): string {
  const start = `<!-- ${name}:start -->`;
  const end = `<!-- ${name}:end -->`;
  const i = doc.indexOf(start);
  const j = doc.indexOf(end);
  if (i === -1 || j === -1 || j < i) throw new Error(`README has no ${name} markers`);
  return `${doc.slice(0, i + start.length)}\n${body}\n${doc.slice(j)}`;
}
