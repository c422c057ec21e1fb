// The ten MultiJail languages, in the file's column order.
export const MULTIJAIL_LANGUAGES = ['en', 'zh', 'it', 'vi', 'ar', 'ko', 'th', 'bn', 'sw', 'jv'] as const;
export type MultiJailLanguage = (typeof MULTIJAIL_LANGUAGES)[number];

/** The languages the MPO paper evaluates on (Table 2): high-resource en/zh, then ko, ar, bn, sw. */
export const DEFAULT_MULTIJAIL_LANGUAGES: readonly MultiJailLanguage[] = ['en', 'zh', 'ko', 'ar', 'bn', 'sw'];

export function isMultiJailLanguage(x: string): x is MultiJailLanguage {
  return (MULTIJAIL_LANGUAGES as readonly string[]).includes(x);
}
