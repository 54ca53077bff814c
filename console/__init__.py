"""Masar's web console: the pages staff and coordinators work in, in Arabic,
French and English (Tamazight for the navigation and the statuses).

A client of the services like the CLI: every page calls the services' gRPC
APIs with the signed-in person's own token (so their role and scope checks
apply unchanged), journeys through intake's journey API — never Temporal,
never a service's database. Server-rendered (Starlette + Jinja2), every asset
shipped in this package, no script inline and nothing from a CDN.

Layout:
- `app` — the Starlette application: routes, middleware, error pages;
- `sessions` — server-side sessions (the cookie holds a random id only),
  CSRF tokens, idle sign-out;
- `backend` — one gRPC channel per service, calls with the person's token,
  gRPC errors turned into pages;
- `i18n` — gettext catalogs (console/locale), Morocco's time and formats;
- `web` — what every page uses: rendering, forms, role checks;
- `pages/` — one module per group of pages (sign-in, staff, intake,
  coordinator board, case, notifications)."""
