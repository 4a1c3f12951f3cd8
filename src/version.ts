/** Cordon's version, reported by `--version`, in SARIF output and in every audit event. */
export const VERSION = '0.1.0';
