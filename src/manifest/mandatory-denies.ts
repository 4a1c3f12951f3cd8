/**
 * Paths no agent may touch whatever its manifest grants, unless the manifest carries an
 * explicit `overrides` entry with a reason (and then every use is reported). The policy
 * decision point and the sandbox enforce this list; lint warns when a grant collides with it.
 */
export interface MandatoryDeny {
  readonly id: string;
  readonly description: string;
  /** Path patterns: `~/...` per user, or absolute. */
  readonly paths: readonly string[];
  /** `all`: no read and no write; `write`: reading is allowed, changing is not. */
  readonly access: 'all' | 'write';
  /** False for Cordon's own directories: no manifest can lift these. */
  readonly overridable: boolean;
}

/**
 * Python's user site, for every version: each `*.pth` file there (and `usercustomize.py`,
 * `sitecustomize.py`, any module shadowing a host package) runs in every python3 the user
 * starts. A new file cannot be kept out of a writable directory, so the whole directory is denied.
 */
export const PYTHON_USER_SITE = '~/.local/lib/python3*/site-packages';

export const MANDATORY_DENIES: readonly MandatoryDeny[] = [
  {
    id: 'ssh',
    description: 'SSH keys and config',
    paths: ['~/.ssh'],
    access: 'all',
    overridable: true,
  },
  { id: 'gnupg', description: 'GnuPG keys', paths: ['~/.gnupg'], access: 'all', overridable: true },
  {
    id: 'aws',
    description: 'AWS credentials',
    paths: ['~/.aws'],
    access: 'all',
    overridable: true,
  },
  {
    id: 'azure',
    description: 'Azure credentials',
    paths: ['~/.azure'],
    access: 'all',
    overridable: true,
  },
  {
    id: 'gcloud',
    description: 'Google Cloud credentials',
    paths: ['~/.config/gcloud'],
    access: 'all',
    overridable: true,
  },
  {
    id: 'kube',
    description: 'Kubernetes credentials',
    paths: ['~/.kube'],
    access: 'all',
    overridable: true,
  },
  {
    id: 'docker',
    description: 'Docker registry credentials',
    paths: ['~/.docker/config.json'],
    access: 'all',
    overridable: true,
  },
  {
    id: 'package-credentials',
    description: 'netrc and package registry tokens',
    paths: [
      '~/.netrc',
      '~/.npmrc',
      '~/.yarnrc.yml',
      '~/.pypirc',
      '~/.git-credentials',
      '~/.config/git/credentials',
      '~/.config/gh',
      '~/.config/hub',
      '~/.cargo/credentials',
      '~/.cargo/credentials.toml',
      '~/.gem/credentials',
      '~/.m2/settings.xml',
      '~/.m2/settings-security.xml',
      '~/.gradle/gradle.properties',
      '~/.nuget/NuGet/NuGet.Config',
    ],
    access: 'all',
    overridable: true,
  },
  {
    id: 'service-credentials',
    description:
      'tokens of infrastructure and data tools (Vault, Terraform, rclone, 1Password CLI, ...)',
    paths: [
      '~/.vault-token',
      '~/.terraform.d/credentials.tfrc.json',
      '~/.config/rclone/rclone.conf',
      '~/.config/op',
      '~/.op',
      '~/.databrickscfg',
      '~/.boto',
      '~/.s3cfg',
      '~/.oci',
      '~/.config/doctl',
      '~/.pgpass',
      '~/.my.cnf',
    ],
    access: 'all',
    overridable: true,
  },
  {
    id: 'keyrings',
    description: 'keyrings and password stores',
    paths: [
      '~/.local/share/keyrings',
      '~/.password-store',
      '~/.config/keepassxc',
      '~/.local/share/kwalletd',
      '~/.pki',
    ],
    access: 'all',
    overridable: true,
  },
  {
    id: 'browser-profiles',
    description: 'browser profiles (cookies, saved passwords, sessions)',
    paths: [
      '~/.config/google-chrome',
      '~/.config/chromium',
      '~/.mozilla',
      '~/.config/BraveSoftware',
      '~/.config/microsoft-edge',
      '~/snap/chromium',
      '~/snap/firefox',
    ],
    access: 'all',
    overridable: true,
  },
  {
    id: 'shell-startup',
    description: 'shell rc and profile files (code that runs in every new shell)',
    paths: [
      '~/.bashrc',
      '~/.bash_profile',
      '~/.bash_login',
      '~/.profile',
      '~/.zshrc',
      '~/.zprofile',
      '~/.zshenv',
      '~/.zlogin',
      '~/.zlogout',
      '~/.bash_aliases',
      '~/.bashrc.d',
      '~/.config/fish',
    ],
    access: 'write',
    overridable: true,
  },
  {
    id: 'user-programs',
    description:
      "the user's own programs and the Python user site (code the user's next command or python3 runs)",
    paths: ['~/.local/bin', '~/bin', PYTHON_USER_SITE],
    access: 'write',
    overridable: true,
  },
  {
    id: 'session-startup',
    description:
      'desktop autostart entries, systemd user units and direnv configuration (code the next login or shell runs)',
    paths: ['~/.config/autostart', '~/.config/systemd/user', '~/.config/direnv'],
    access: 'write',
    overridable: true,
  },
  {
    id: 'git-hooks',
    description: 'git hooks and repository config (code that runs on the next git command)',
    paths: ['/**/.git/hooks', '/**/.git/config'],
    access: 'write',
    overridable: true,
  },
  {
    id: 'agent-config',
    description:
      "coding agents' own settings, hooks and MCP server lists (code the next unconfined agent runs), in the home directory and in any project",
    paths: [
      '~/.claude/settings.json',
      '~/.claude/settings.local.json',
      '~/.claude/hooks',
      '~/.claude/plugins',
      '~/.codex/config.toml',
      '~/.codex/hooks.json',
      '~/.codex/rules',
      '~/.gemini/settings.json',
      '~/.gemini/extensions',
      '~/.cursor/mcp.json',
      '/etc/claude-code',
      '/etc/codex',
      '/etc/gemini-cli',
      '/**/.claude/settings.json',
      '/**/.claude/settings.local.json',
      '/**/.claude/hooks',
      '/**/.codex/config.toml',
      '/**/.codex/hooks.json',
      '/**/.codex/rules',
      '/**/.gemini/settings.json',
      '/**/.gemini/extensions',
      '/**/.mcp.json',
    ],
    access: 'write',
    overridable: true,
  },
  {
    id: 'system-secrets',
    description: 'shadow passwords, sudoers, SSH host keys and TLS private keys',
    paths: [
      '/etc/shadow',
      '/etc/shadow-',
      '/etc/gshadow',
      '/etc/gshadow-',
      '/etc/security/opasswd',
      '/etc/sudoers',
      '/etc/sudoers.d',
      '/etc/ssh/*_key',
      '/etc/ssl/private',
    ],
    access: 'all',
    overridable: true,
  },
  {
    id: 'cordon',
    description: "Cordon's own policy and state (manifests, trust store, approvals, audit log)",
    paths: ['~/.config/cordon', '~/.local/state/cordon', '/etc/cordon', '/var/lib/cordon'],
    access: 'all',
    overridable: false,
  },
];

/** Ids a manifest `overrides` entry may name. */
export const OVERRIDABLE_DENY_IDS = MANDATORY_DENIES.filter((d) => d.overridable).map((d) => d.id);
