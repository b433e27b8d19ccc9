"""Words the simulator draws names and details from. They carry no signal."""

COMPANY_FIRST = (
    "Acme", "Apex", "Atlas", "Aurora", "Beacon", "Blue", "Bright", "Cedar", "Clear", "Cobalt",
    "Copper", "Crest", "Delta", "Echo", "Ember", "Evergreen", "First", "Fox", "Golden", "Granite",
    "Harbor", "Helix", "Horizon", "Iron", "Juniper", "Keystone", "Lumen", "Maple", "Meridian", "Nimbus",
    "North", "Nova", "Oak", "Orbit", "Pine", "Pioneer", "Prime", "Quantum", "Red", "Ridge",
    "River", "Sage", "Silver", "Sky", "Stone", "Summit", "True", "Vertex", "West", "Zenith",
)
COMPANY_SECOND = (
    "Analytics", "Bio", "Capital", "Cloud", "Consulting", "Data", "Dynamics", "Energy", "Foods", "Freight",
    "Health", "Holdings", "Labs", "Learning", "Logistics", "Media", "Metrics", "Networks", "Partners", "Pay",
    "Robotics", "Retail", "Security", "Software", "Solutions", "Studios", "Systems", "Tech", "Works", "Ventures",
)
COMPANY_STEM_END = (
    "bridge", "brook", "core", "crest", "dale", "field", "gate", "grove", "haven", "hill",
    "land", "light", "line", "mark", "mont", "point", "port", "ridge", "rock", "shore",
    "side", "spring", "stone", "tide", "vale", "view", "wave", "well", "wood", "worth",
)
COMPANY_SUFFIX = ("", " Inc", " Ltd", " GmbH", " LLC", " Group", " SA", " AB")

FREE_EMAIL_DOMAINS = (
    "gmail.com", "yahoo.com", "outlook.com", "hotmail.com", "icloud.com",
    "gmx.de", "yahoo.co.uk", "aol.com", "proton.me", "web.de",
)
COUNTRY_TLD = {
    "United Kingdom": ".co.uk", "Germany": ".de", "France": ".fr", "Netherlands": ".nl",
    "Australia": ".com.au", "Brazil": ".com.br", "Spain": ".es", "Sweden": ".se",
    "India": ".in", "Singapore": ".sg", "Canada": ".ca",
}

DEPARTMENT_TITLE = {
    "marketing": "Marketing", "sales": "Sales", "operations": "Operations", "it": "IT",
    "engineering": "Engineering", "finance": "Finance", "hr": "People", "other": "Business",
}
C_LEVEL_TITLE = {
    "marketing": "CMO", "sales": "CRO", "operations": "COO", "it": "CIO",
    "engineering": "CTO", "finance": "CFO", "hr": "CHRO", "other": "CEO",
}
SENIORITY_TITLE = {
    "student": "Student",
    "individual_contributor": "{dept} Specialist",
    "manager": "{dept} Manager",
    "director": "Director of {dept}",
    "vp": "VP of {dept}",
}

CAMPAIGN_THEMES = {
    "organic_search": ("SEO: lead scoring guides", "SEO: revenue operations"),
    "paid_search": ("Search: brand", "Search: lead scoring software", "Search: competitor terms"),
    "paid_social": ("LinkedIn: ICP retargeting", "LinkedIn: thought leadership"),
    "ebook": ("E-book: The RevOps playbook", "E-book: Scoring leads without guesswork"),
    "whitepaper": ("White paper: Predictive scoring in B2B", "White paper: Funnel benchmarks"),
    "webinar": ("Webinar: Pipeline forecasting", "Webinar: From MQL to revenue"),
    "demo_request": ("Website: demo request",),
    "free_trial": ("Website: free trial",),
    "referral": ("Customer referral programme",),
    "event": ("Trade show: SaaS Connect", "Trade show: MarTech Summit", "Roadshow: Revenue Days"),
    "outbound": ("Outbound: mid-market sequence", "Outbound: enterprise sequence"),
    "partner": ("Partner: agency network", "Partner: integration marketplace"),
}

ACTIVITY_DETAILS = {
    "page_view": ("/", "/product", "/product/integrations", "/solutions/marketing", "/solutions/sales",
                  "/customers", "/about", "/careers", "/blog", "/docs"),
    "pricing_page_view": ("/pricing", "/pricing/enterprise", "/pricing/compare"),
    "article_read": ("/blog/lead-scoring-101", "/blog/what-is-an-mql", "/blog/mql-vs-sql",
                     "/blog/funnel-metrics", "/blog/attribution-models", "/blog/revops-stack"),
    "whitepaper_download": ("Predictive scoring in B2B", "Funnel benchmarks 2024", "Data quality in the CRM"),
    "ebook_download": ("The RevOps playbook", "Scoring leads without guesswork", "The MQL handbook"),
    "case_study_download": ("Case study: Atlas Freight", "Case study: Lumen Health", "Case study: Crest Pay"),
    "newsletter_signup": ("Monthly newsletter",),
    "webinar_registration": ("Pipeline forecasting", "From MQL to revenue", "Sales and marketing alignment",
                             "Building an ICP"),
    "email_open": ("Nurture: welcome", "Nurture: use cases", "Newsletter", "Product update", "Event invitation"),
    "email_click": ("Nurture: welcome", "Nurture: use cases", "Newsletter", "Product update", "Event invitation"),
    "contact_form": ("/contact",),
    "demo_request": ("/demo",),
    "free_trial_signup": ("/trial",),
    "social_interaction": ("LinkedIn: like", "LinkedIn: comment", "LinkedIn: share", "X: mention"),
    "unsubscribe": ("All marketing e-mails",),
    "call": ("Discovery call", "Follow-up call", "Pricing call"),
    "meeting": ("Product demo", "Technical deep-dive", "Proposal review"),
}
# A webinar attendance names the webinar that was registered for.
ACTIVITY_DETAILS["webinar_attendance"] = ACTIVITY_DETAILS["webinar_registration"]

SDR_OWNERS = ("Ana Ortiz", "Ben Clarke", "Chloe Dubois", "Dev Patel", "Emma Larsen", "Femi Adeyemi")
AE_OWNERS = ("Grace Kim", "Hugo Martin", "Isabel Costa", "Jonas Weber")
