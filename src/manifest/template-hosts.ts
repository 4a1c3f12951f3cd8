/**
 * The role templates' names and host parameters, for the CLI's help text: kept apart from the
 * templates themselves so that printing help (or any verb) does not load the manifest schema.
 * test/templates checks that it matches TEMPLATES.
 */
export const TEMPLATE_HOST_PARAMS: readonly {
  readonly name: string;
  readonly hostParam: string;
}[] = [
  { name: 'finance-analyst', hostParam: 'sheetsHost' },
  { name: 'legal-drafting', hostParam: 'dmsHost' },
  { name: 'sre-oncall', hostParam: 'grafanaHost' },
  { name: 'developer', hostParam: 'gitHost' },
];
