//! The rule table: every free-text scrubbing rule, declared as data.
//!
//! A rule is `{ id, kind, method, pattern, check }`:
//! - `pattern` is a `regex` crate pattern (linear time, no backtracking). If it has capture groups
//!   whose names start with `s` (`s`, `s1`, `s2`, ...), the first one that participates is the
//!   span that gets replaced (so `password=` stays and only the value goes); otherwise the whole
//!   match is replaced.
//! - `check` is an optional validator that sees the whole text, the captures and the span; it may
//!   reject the candidate (Luhn, mod-97, word boundaries, placeholders...), narrow it, or refine the
//!   rule id/kind (the key=value rule names the kind after the key).
//!
//! Order matters only for ties: when two candidates overlap, the longest wins; between candidates
//! of equal length the rule declared first (the more specific one) wins. Each rule has positive
//! and negative tests at the bottom of this file.

use super::validate as v;
use super::{Method, RuleSpec};

/// Every rule, most specific first.
pub static RULES: &[RuleSpec] = &[
    // ---------------------------------------------------------------- keys and tokens
    RuleSpec {
        id: "@private_key",
        kind: "private_key",
        method: Method::Replace,
        // A PEM (or PGP) private key block, up to its END line, or up to the end of the text when
        // the block was cut (logs truncate long values).
        pattern: r"(?x)
            -----BEGIN[\ A-Z0-9_-]{0,40}PRIVATE\ KEY(?:\ BLOCK)?-----
            (?s:.*?)
            (?:-----END[\ A-Z0-9_-]{0,40}PRIVATE\ KEY(?:\ BLOCK)?-----|\z)",
        check: None,
    },
    RuleSpec {
        id: "@jwt",
        kind: "jwt",
        method: Method::Replace,
        // header.payload[.signature]: both JSON objects, so both start with `ey` in base64url.
        pattern: r#"(?x)
            \b(?P<s>
                eyJ[A-Za-z0-9_-]{6,}      # header: {"alg"...
                \.ey[A-Za-z0-9_-]{2,}     # payload
                (?:\.[A-Za-z0-9_-]*){0,3} # signature (JWS), or more parts (JWE)
            )"#,
        check: None,
    },
    RuleSpec {
        id: "@basic_auth",
        kind: "basic_auth",
        method: Method::Replace,
        // `Basic <base64(user:pass)>`; the check decodes it and wants a `:`.
        pattern: r"(?x)\b(?i-u:basic)\s+(?P<s>[A-Za-z0-9+/]{4,}={0,2})",
        check: Some(v::basic_credentials),
    },
    RuleSpec {
        id: "@bearer",
        kind: "bearer",
        method: Method::Replace,
        // `Bearer <token>` anywhere (headers, curl lines, log lines).
        pattern: r"(?x)\b(?i-u:bearer)\s+(?P<s>[A-Za-z0-9._~+/=-]{8,}|(?i-u:sha256)~[A-Za-z0-9._~+/=@-]{4,})",
        check: Some(v::token_like),
    },
    RuleSpec {
        id: "@aws_access_key",
        kind: "aws_access_key",
        method: Method::Replace,
        pattern: r"(?x)\b(?P<s>(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|APKA)[A-Z0-9]{16})\b",
        check: None,
    },
    RuleSpec {
        id: "@aws_secret_key",
        kind: "aws_secret_key",
        method: Method::Replace,
        // 40 base64 characters after an aws…secret/access… key name.
        pattern: r#"(?x)
            (?i-u:aws)[A-Za-z0-9_.-]{0,24}?(?i-u:secret|access|private)[A-Za-z0-9_.-]{0,24}
            ["'\]]*\s*(?:=>|:=|[:=])\s*["'`]?
            (?P<s>[A-Za-z0-9/+=]{40})"#,
        check: Some(v::not_followed_by_base64),
    },
    RuleSpec {
        id: "@github_token",
        kind: "github_token",
        method: Method::Replace,
        pattern: r"(?x)\b(?P<s>gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,})",
        check: None,
    },
    RuleSpec {
        id: "@stripe_key",
        kind: "stripe_key",
        method: Method::Replace,
        // Secret and restricted keys (publishable `pk_` keys are public), and webhook secrets.
        pattern: r"(?x)\b(?P<s>(?:sk|rk)_(?:live|test|prod)_[A-Za-z0-9]{10,}|whsec_[A-Za-z0-9]{24,})",
        check: None,
    },
    RuleSpec {
        id: "@slack_webhook",
        kind: "slack_webhook",
        method: Method::Replace,
        pattern: r"(?x)(?:https?://)?hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9+/_-]{8,}",
        check: None,
    },
    RuleSpec {
        id: "@slack_token",
        kind: "slack_token",
        method: Method::Replace,
        // xoxb- (bot), xoxp- (user), xoxa-/xoxr-/xoxs-/xoxe- and config tokens `xoxe.xoxp-…`;
        // app-level tokens `xapp-`.
        pattern: r"(?x)\b(?P<s>xox[a-z](?:\.xox[a-z])?-[A-Za-z0-9-]{6,}|xapp-[0-9]-[A-Za-z0-9-]{10,})",
        check: None,
    },
    RuleSpec {
        id: "@google_api_key",
        kind: "google_api_key",
        method: Method::Replace,
        pattern: r"(?x)\b(?P<s>AIza[0-9A-Za-z_-]{35})",
        check: None,
    },
    RuleSpec {
        id: "@anthropic_key",
        kind: "anthropic_key",
        method: Method::Replace,
        pattern: r"(?x)\b(?P<s>sk-ant-[A-Za-z0-9_-]{20,})",
        check: None,
    },
    RuleSpec {
        id: "@openai_key",
        kind: "openai_key",
        method: Method::Replace,
        // sk-…, sk-proj-…, sk-svcacct-…, sk-admin-… (an `sk-ant-` key ties and loses to Anthropic).
        pattern: r"(?x)\b(?P<s>sk-(?:proj-|svcacct-|admin-|None-)?[A-Za-z0-9_-]{20,})",
        check: Some(v::token_like),
    },
    RuleSpec {
        id: "@cloudflare_token",
        kind: "cloudflare_token",
        method: Method::Replace,
        // Origin CA keys anywhere; API tokens and global API keys after a cloudflare/cf key name.
        pattern: r#"(?x)
            \b(?P<s1>[vV]1\.0-[a-fA-F0-9]{24}-[a-fA-F0-9]{146})
          | (?:(?i-u:cloudflare)|\b(?i-u:cf))[A-Za-z0-9_.-]{0,24}?(?i-u:token|key|secret|auth)[A-Za-z0-9_.-]{0,16}
            ["'\]]*\s*(?:=>|:=|[:=])\s*["'`]?
            (?P<s2>[A-Za-z0-9_-]{32,64})"#,
        check: None,
    },
    RuleSpec {
        id: "@vendor_token",
        kind: "api_key",
        method: Method::Replace,
        // Vendor tokens recognisable by their prefix alone (gitleaks' catalogue, abridged).
        pattern: r"(?x)
            (?:^|[^A-Za-z0-9_])
            (?P<s>
                glpat-[A-Za-z0-9_.-]{20,}                       # GitLab
              | gl(?:dt|ft|rt|ptt|cbt|imt|oas|soat|agent|ffct|cd|wt)-[A-Za-z0-9_.-]{16,}
              | GR1348941[A-Za-z0-9_-]{20,}                      # GitLab runner registration
              | npm_[A-Za-z0-9]{36}                              # npm
              | pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,}           # PyPI
              | (?:hf|api_org)_[A-Za-z0-9]{30,}                  # Hugging Face
              | SG\.[A-Za-z0-9_-]{20,24}\.[A-Za-z0-9_-]{39,50}   # SendGrid
              | do[opr]_v1_[a-f0-9]{64}                          # DigitalOcean
              | shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}               # Shopify
              | sq0(?:atp|csp)-[A-Za-z0-9_\\^-]{22,}             # Square
              | EAAA[A-Za-z0-9_+=-]{60}
              | dapi[a-f0-9]{32}(?:-[0-9])?                      # Databricks
              | dp\.(?:pt|st|sa|ct|scim|audit)\.[A-Za-z0-9]{40,} # Doppler
              | [A-Za-z0-9]{14}\.atlasv1\.[A-Za-z0-9_=-]{60,}    # Terraform Cloud
              | hv[sb]\.[A-Za-z0-9_-]{20,}                       # Vault
              | pul-[a-f0-9]{40}                                 # Pulumi
              | PMAK-[a-f0-9]{24}-[a-f0-9]{34}                   # Postman
              | lin_(?:api|oauth)_[A-Za-z0-9]{32,}               # Linear
              | pscale_(?:tkn|oauth|pw)_[A-Za-z0-9=._-]{32,}     # PlanetScale
              | sntr[ysu]s?_[A-Za-z0-9+/=_]{30,}                 # Sentry
              | gl(?:c|sa)_[A-Za-z0-9_+/=]{32,}                  # Grafana
              | ATATT3[A-Za-z0-9_=-]{100,}                       # Atlassian
              | NR(?:AK|II|JS)-[A-Za-z0-9]{19,}                  # New Relic
              | AGE-SECRET-KEY-1[A-Z0-9]{58}                     # age
              | fo1_[A-Za-z0-9_-]{43}                            # Fly.io
              | FlyV1\ fm[12][ar]?_[A-Za-z0-9+/=,_-]{100,}
              | key-[a-f0-9]{32}                                 # Mailgun
              | ops_eyJ[A-Za-z0-9+/=]{100,}                      # 1Password service account
              | rubygems_[a-f0-9]{48}                            # RubyGems
              | sgp_(?:[a-fA-F0-9]{16}_|local_)?[a-fA-F0-9]{40}  # Sourcegraph
              | pnu_[A-Za-z0-9]{36}                              # Prefect
              | sbp_[a-f0-9]{40}                                 # Supabase
              | dckr_pat_[A-Za-z0-9_-]{27}                       # Docker Hub
              | CLOJARS_[a-z0-9]{60}                             # Clojars
              | xkeysib-[a-f0-9]{64}-[A-Za-z0-9]{16}             # Sendinblue
              | shippo_(?:live|test)_[a-f0-9]{40}                # Shippo
              | EZ[AT]K[A-Za-z0-9]{54}                           # EasyPost
              | (?:dop|doo|dor)_v1_[a-f0-9]{64}
              | sha256~[A-Za-z0-9_-]{43}                         # OpenShift
              | tfp_[A-Za-z0-9_-]{40,}                           # Typeform
              | AC[a-f0-9]{32}|SK[a-f0-9]{32}                    # Twilio
              | mfa\.[A-Za-z0-9_-]{84}                           # Discord
              | ghr_[A-Za-z0-9]{36}
              | AKCp[A-Za-z0-9]{69}|cmVmd[A-Za-z0-9]{59}         # JFrog / Artifactory
              | ya29\.[A-Za-z0-9_-]{30,}                         # Google OAuth access token
              | 1//0[A-Za-z0-9_-]{30,}                           # Google OAuth refresh token
              | hf_oauth_[A-Za-z0-9]{30,}
              | pat[A-Za-z0-9]{14}\.[a-f0-9]{64}                 # Airtable
              | glsa_[A-Za-z0-9]{32}_[a-f0-9]{8}
              | rnd_[A-Za-z0-9]{32,}                             # Render
              | vercel_[A-Za-z0-9_-]{24,}
              | re_[A-Za-z0-9]{8}_[A-Za-z0-9]{24,}               # Resend
              | pk\.eyJ[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{20,}    # Mapbox
              | sk\.eyJ[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{20,}
              | A3-[A-Z0-9]{6}-(?:[A-Z0-9]{11}|[A-Z0-9]{6}-[A-Z0-9]{5})-[A-Z0-9]{5}-[A-Z0-9]{5}-[A-Z0-9]{5} # 1Password
              | p8e-[A-Za-z0-9]{32}                              # Adobe
              | LTAI[A-Za-z0-9]{20}                              # Alibaba
              | ABSK[A-Za-z0-9+/]{100,}=*                        # AWS Bedrock
              | [A-Za-z0-9_~.]{3}[0-9]Q~[A-Za-z0-9_~.-]{31,34}   # Azure AD client secret
              | [0-9]{15,16}(?:\||%7[Cc])[0-9A-Za-z_-]{27}       # Facebook app token
              | EAA[A-Z][A-Za-z0-9]{60,}                         # Facebook access token
              | s-s4t2(?:ud|af)-[a-f0-9]{64}                     # 42 intra
              | ntn_[0-9]{11}[A-Za-z0-9]{32,}                    # Notion
              | sq[apu]_[A-Za-z0-9]{40}                          # SonarQube
              | HRKU-[A-Za-z0-9_-]{40,}                          # Heroku
              | secret_[A-Za-z0-9]{43}                           # Notion (legacy)
            )",
        check: None,
    },
    RuleSpec {
        id: "@webhook_url",
        kind: "webhook_url",
        method: Method::Replace,
        pattern: r"(?x)
            https://[A-Za-z0-9.-]*\.webhook\.office\.com/webhookb2/[A-Za-z0-9@/_-]{20,}
          | https://(?:ptb\.|canary\.)?discord(?:app)?\.com/api/webhooks/[0-9]+/[A-Za-z0-9_-]{20,}",
        check: None,
    },
    // ---------------------------------------------------------------- credentials in context
    RuleSpec {
        id: "@url_userinfo",
        kind: "url_userinfo",
        method: Method::Replace,
        // scheme://user:pass@host — everything between `://` and the last `@` of the authority.
        pattern: r#"(?x)\b[A-Za-z][A-Za-z0-9+.-]{1,20}://(?P<s>[^\s/?\#"'<>@]+(?:@[^\s/?\#"'<>@]+)*)@[A-Za-z0-9\[]"#,
        check: Some(v::userinfo_not_placeholder),
    },
    RuleSpec {
        id: "@curl_user",
        kind: "basic_auth",
        method: Method::Replace,
        // curl -u user:pass / --user 'user:pass'
        pattern: r#"(?x)(?:^|\s)(?:-u|--user)\s+(?P<s>(?:"[^"\r\n]*"|'[^'\r\n]*'|[^\s"']+)+)"#,
        check: Some(v::curl_credentials),
    },
    RuleSpec {
        id: "@cookie_header",
        kind: "session_cookie",
        method: Method::Replace,
        // A Cookie / Set-Cookie header line: the whole value goes.
        pattern: r"(?x)\b(?i-u:(?:set-)?cookie)\s*:\s*(?P<s>[^\s\r\n][^\r\n]*)",
        check: Some(v::not_placeholder),
    },
    RuleSpec {
        id: "@secret_kv",
        kind: "secret",
        method: Method::Replace,
        // `<key> <op> <value>` where the key names a secret (password, token, api_key, secret,
        // auth, cookie, session, ...); `classify_key` decides, and names the kind. Also the
        // reversed comparison `"<value>" == password`.
        pattern: r#"(?x)
            \b(?i-u:key)\s*=\s*"(?P<k3>[^"\r\n]{1,64})"\s+(?i-u:value)\s*=\s*"(?P<s8>[^"\r\n]*)"    # <add key="Password" value="…"/>
          | (?P<k>[A-Za-z0-9_.-]*(?i-u:pass|pwd|secret|token|key|auth|credential|cookie|sess|sid|jwt|bearer|csrf|xsrf
                  |__secure-|__host-)[A-Za-z0-9_.-]*)
            (?:\[[0-9]*\])?
            (?:
                \\?["']?                                      # closing quote of a quoted key
                (?:\s*:?\s*(?i-u:string|str|&str|const|char|bytes|\[\]byte|text))?   # typed declarations
                \s*(?:=>|:=|===?|!==?|[.:?+|]{1,3}=|[:=])\s*@?
                (?:
                    "(?P<s1>[^"\r\n]*)"
                  | '(?P<s2>[^'\r\n]*)'
                  | `(?P<s3>[^`\r\n]*)`
                  | \\"(?P<s4>[^"\\\r\n]*)                       # escaped JSON: \"value\"
                  | ["'`]?(?P<s5>(?:[^\s"'`,;&\\]|\\[^"'\s])+)   # bare value
                )
              | \s+"(?P<s6>[^"\r\n]+)"                          # password "value"
            )
          | "(?P<s7>[^"\r\n]+)"\s*(?:===?|!==?)\s*               # "value" == password
            (?P<k2>[A-Za-z0-9_.]*(?i-u:pass|pwd|secret|token|api_?key|private_?key|auth)[A-Za-z0-9_.]*)
          | ["'](?P<k4>[A-Za-z0-9_.-]{1,64})["']\s*,\s*["'](?P<s9>[^"'\r\n]+)["']        # setProperty("TOKEN", "…")
          | <(?P<k5>[A-Za-z0-9_.-]{1,64})>(?:\s|\\[nrtNRT])*(?P<s10>[^<\s\\]+)          # <token>…</token>
            "#,
        check: Some(v::secret_kv),
    },
    RuleSpec {
        id: "@bundler_credential",
        kind: "credential",
        method: Method::Replace,
        // Bundler host credentials: BUNDLE_GEMS__EXAMPLE__COM=user:pass
        pattern: r#"(?x)\bBUNDLE_[A-Z0-9_]*__[A-Z0-9_]+["']?\s*[:=]\s*["']?(?P<s>[^\s"']+)"#,
        check: Some(v::has_colon),
    },
    RuleSpec {
        id: "@base64_credentials",
        kind: "basic_auth",
        method: Method::Replace,
        // Padded base64 that decodes to `user:password` (Kubernetes `data:` values, env files).
        pattern: r"(?x)(?:^|[^A-Za-z0-9+/])(?P<s>[A-Za-z0-9+/]{8,}={1,2})",
        check: Some(v::base64_credentials),
    },
    RuleSpec {
        id: "@base64_blob",
        kind: "encoded_secret",
        method: Method::Replace,
        // Base64 of a JSON object (docker config, service-account files) or of a PEM block.
        pattern: r"(?x)\b(?P<s>eyJ[A-Za-z0-9+/]{40,}={0,2}|LS0tLS1CRUdJTi[A-Za-z0-9+/]{20,}={0,2})",
        check: None,
    },
    // ---------------------------------------------------------------- PII
    RuleSpec {
        id: "@email",
        kind: "email",
        method: Method::Replace,
        // local@domain.tld (also percent-encoded `%40`, and IDN `xn--` labels).
        pattern: r"(?x)
            [A-Za-z0-9._%+-]+
            (?:@|%40)
            [A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?
            (?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?)*
            \.(?:xn--[A-Za-z0-9-]{2,59}|[A-Za-z]{2,24})",
        check: Some(v::email),
    },
    RuleSpec {
        id: "@credit_card",
        kind: "credit_card",
        method: Method::Mask(v::card_brand),
        // 13–19 digits, plain or in groups of 4 (Amex 4-6-5); Luhn, issuer prefix and boundaries
        // are checked in code.
        pattern: r"(?x)
            \b(?P<s>
                [0-9]{4}(?:[\ -][0-9]{4}){3}(?:[\ -]?[0-9]{1,3})?
              | [0-9]{4}[\ -][0-9]{6}[\ -][0-9]{4,5}
              | [0-9]{13,19}
            )\b",
        check: Some(v::credit_card),
    },
    RuleSpec {
        id: "@iban",
        kind: "iban",
        method: Method::Mask(v::iban_country),
        pattern: r"(?x)\b(?P<s>[A-Z]{2}[0-9]{2}(?:\ ?[A-Z0-9]{4}){2,7}(?:\ ?[A-Z0-9]{1,3})?)\b",
        check: Some(v::iban),
    },
    RuleSpec {
        id: "@ipv6",
        kind: "ip",
        method: Method::Replace,
        // Candidates: 8 groups, 6 groups + IPv4, or a compressed form with `::` (optional IPv4
        // tail); then zone and prefix length. `std::net::Ipv6Addr` decides, and the check enforces
        // word boundaries (`std::cout`, `fe80::1text`). `file.js:12:34` never gets this far.
        pattern: r"(?x)
            (?:
                (?:[0-9A-Fa-f]{1,4}:){6}(?:[0-9]{1,3}\.){3}[0-9]{1,3}
              | (?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}
              | (?:[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){0,6})?
                ::
                (?:(?:[0-9A-Fa-f]{1,4}:){0,5}(?:[0-9]{1,3}\.){3}[0-9]{1,3}|[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){0,6})?
            )
            (?:%[0-9A-Za-z._-]+)?
            (?:/[0-9]{1,4})?",
        check: Some(v::ipv6),
    },
    RuleSpec {
        id: "@ipv4",
        kind: "ip",
        method: Method::Replace,
        pattern: r"(?x)
            (?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])
            (?:\.(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3}
            (?:/[0-9]{1,3})?",
        check: Some(v::ipv4),
    },
    RuleSpec {
        id: "@mac",
        kind: "mac",
        method: Method::Replace,
        pattern: r"(?x)
            [0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}
          | [0-9A-Fa-f]{2}(?:-[0-9A-Fa-f]{2}){5}
          | [0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}",
        check: Some(v::mac),
    },
    RuleSpec {
        id: "@phone",
        kind: "phone",
        method: Method::Replace,
        // International (+CC ...), North American (415) 555-0132 / 415-555-0132, and national
        // numbers with a trunk 0 (090-1234-5678, 0917 123 4567, 09171234567). Bare digit runs
        // without a leading 0 or + are left alone: they are ids and timestamps far more often.
        pattern: r"(?x)
            \+[1-9][0-9]{0,3}(?:[\ .-]?(?:\([0-9]{1,4}\)|[0-9]{1,5})){1,7}
          | \([2-9][0-9]{2}\)[\ .-]?[0-9]{3}[\ .-][0-9]{4}
          | [2-9][0-9]{2}[.-][0-9]{3}[.-][0-9]{4}
          | (?:0|\(0[0-9]{1,4}\)|0[0-9]{1,4})(?:[\ -]\(?[0-9]{2,4}\)?){2,4}
          | 0[0-9]{1,2}-[0-9]{7,8}
          | 0[1-9][0-9]{8,9}",
        check: Some(v::phone),
    },
];
