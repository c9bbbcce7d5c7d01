"""The labelled recall set: facts hidden in a year of daily logs, and questions that ask
for them the way people ask, not in the fact's own words.

Each entry is (where, fact line, question, kind):
  where     a date (the fact is a line of that day's log, `memory/YYYY-MM-DD.md`) or a
            workspace file with a heading (`MEMORY.md#Home`, `knowledge/car.md#Service`)
  kind      what separates the question from the fact:
              synonym   another word for the same thing (car / vehicle, flat / apartment)
              abbrev    an abbreviation or its expansion (k8s, PR, DB, BP, 2FA, NAS)
              form      another form of a word (ran / running, renew / renewal, swam / swim)
              category  a category for its member (instrument / guitar, pet / cat)
              reworded  the same words mostly, reordered and rephrased
Questions keep some of the fact's words where people would naturally keep them; a
question sharing no content word with its fact is the hard case that only meaning finds.
"""

FACTS = [
    # synonyms
    ("2025-02-11", "Took the Corolla to the garage: the mechanic says the timing belt must be replaced before 150,000 km.",
     "what does the mechanic say needs replacing on my vehicle?", "synonym"),
    ("2025-03-04", "Landlord's phone number is 0612 448 903 (Mr. Okafor), call him about the boiler.",
     "what is the number of the owner of my flat?", "synonym"),
    ("2025-04-19", "Switched electricity supplier to Octopus Energy, 24p per kWh on the fixed tariff.",
     "which power company did we move to?", "synonym"),
    ("2025-05-07", "Bike chain snapped on the way to work; fitted a new Shimano chain for 25 euros.",
     "what broke on my bicycle on the way to the office?", "synonym"),
    ("2025-06-21", "Book club picked 'The Left Hand of Darkness' by Le Guin for July.",
     "what novel is the reading group doing next?", "synonym"),
    ("2025-07-02", "Grandma moved to the Rozenhof care home in Haarlem, room 214.",
     "where does my grandmother live now?", "synonym"),
    ("2025-08-14", "Booked a cabin near Bergen in Norway for the last week of July next year.",
     "where are we going on holiday next summer?", "synonym"),
    ("2025-09-09", "Cancelled the FitLife gym membership, last charge at the end of September.",
     "did I stop paying for the fitness club?", "synonym"),
    ("2025-10-03", "Set a monthly grocery budget of 450 euros with Sam.",
     "how much can we spend on food shopping each month?", "synonym"),
    ("2025-11-12", "Favourite order at Kaffebar: oat flat white with an extra shot.",
     "what do I usually get at the coffee place?", "synonym"),
    # abbreviations
    ("2025-01-22", "Upgraded the Kubernetes cluster at work to 1.29; two nodes needed a manual drain.",
     "which version did we upgrade k8s to?", "abbrev"),
    ("2025-02-26", "Opened a pull request for the billing retry logic, Marta is reviewing it.",
     "who is reviewing my PR for billing retries?", "abbrev"),
    ("2025-03-18", "Postgres database migration to version 16 finished overnight without downtime.",
     "did the DB migration to postgres 16 have any downtime?", "abbrev"),
    ("2025-04-08", "Blood pressure this morning was 128/82, a bit high after coffee.",
     "what was my BP this morning?", "abbrev"),
    ("2025-05-27", "Office VPN now needs the FortiClient app instead of OpenVPN.",
     "which app does the virtual private network need now?", "abbrev"),
    ("2025-06-10", "Moved every password to Bitwarden; two-factor recovery codes are printed and kept in the safe.",
     "where are my 2FA recovery codes?", "abbrev"),
    ("2025-07-23", "The NAS disk is at 91 percent, order a 4 TB drive for the home server.",
     "is the network attached storage running out of space?", "abbrev"),
    ("2025-09-16", "The CI pipeline now caches cargo builds: 6 minutes instead of 14.",
     "how long does continuous integration take now?", "abbrev"),
    ("2025-10-21", "Interviewed a candidate for the SRE role: strong on Terraform, weak on networking.",
     "how did the site reliability engineer candidate do in the interview?", "abbrev"),
    ("2025-12-02", "Dr. Visser says my LDL cholesterol is down to 2.9 since the diet change.",
     "what is my cholesterol level now according to the doctor?", "abbrev"),
    # word forms
    ("2025-01-14", "Renewed my passport at the town hall; the new one is valid until March 2035.",
     "when does my passport renewal run out?", "form"),
    ("2025-03-29", "Ran 10 km along the Amstel in 52 minutes, a personal best.",
     "what is my best time running 10 km?", "form"),
    ("2025-04-26", "Planted three tomato plants and some basil in the raised bed.",
     "what did I plant in the raised bed?", "form"),
    ("2025-05-15", "Swam 40 lengths at the Zuiderbad pool before work.",
     "how many lengths did I swim at the pool?", "form"),
    ("2025-06-30", "Sourdough starter feeding ratio that works: 1:5:5, kept in the fridge.",
     "how should I feed the sourdough starter?", "form"),
    ("2025-08-05", "The monstera needs watering once a week, less in winter.",
     "how often do I water the monstera?", "form"),
    ("2025-08-27", "Decided at the retro: standups move to 9:45 from next sprint.",
     "what time is the standup after the retro decision?", "form"),
    ("2025-09-30", "Filed the tax return today, expecting a refund of about 640 euros.",
     "how much refund do I expect from filing taxes?", "form"),
    ("2025-11-04", "Parking permit for Jacob van Lennepkade renewed until 31 December 2026.",
     "until when is the parking permit renewal valid?", "form"),
    ("2025-12-15", "Bought winter tyres for the Corolla at Profile, 4 x 95 euros fitted.",
     "how much did buying the winter tyres cost?", "form"),
    # category -> member
    ("2025-02-03", "Bought a second-hand Yamaha acoustic guitar for 180 euros.",
     "which instrument did I buy second-hand?", "category"),
    ("2025-03-11", "Took Miso to the vet: she needs deworming tablets every three months.",
     "how often does my cat need deworming?", "category"),
    ("2025-05-20", "Signed up for Japanese evening classes on Tuesdays, starting in September.",
     "which language are the evening classes for?", "category"),
    ("2025-07-15", "Best ramen in town: Men Impossible on the Kinkerstraat.",
     "where do I get the best noodles in town?", "category"),
    ("2025-10-14", "Noah's piano lessons moved to Thursdays at 17:00.",
     "when are my son's music lessons now?", "category"),
    ("2025-11-25", "Emma is allergic to hazelnuts, tell the school before the trip.",
     "which nut is my daughter allergic to?", "category"),
    # reworded (the fact's words, asked another way)
    ("2025-01-08", "Dentist appointment moved to 14 October at 9:30 with Dr. Alvarez.",
     "when is the dentist appointment with Dr. Alvarez?", "reworded"),
    ("2025-02-18", "Home insurance with Allianz renews every 1 May, premium 312 euros a year.",
     "how much is the Allianz home insurance premium?", "reworded"),
    ("2025-04-01", "Mortgage rate fixed at 3.1% for ten years with ING.",
     "what mortgage rate did we fix with ING?", "reworded"),
    ("2025-06-03", "Flight to Lisbon on 3 June is TAP TP1235, departs 07:05 from Schiphol.",
     "what time does the flight to Lisbon depart?", "reworded"),
    ("2025-07-30", "Registered for the Amsterdam marathon in October, bib number 5531.",
     "what is my bib number for the marathon?", "reworded"),
    ("2025-09-02", "In my one-on-one, Priya said the promotion case goes to committee in November.",
     "when does my promotion case go to committee?", "reworded"),
    ("2025-10-28", "Neighbour Carmen waters our plants when we travel; her spare key is in the blue box.",
     "where is Carmen's spare key?", "reworded"),
    ("2025-12-09", "Rent goes up to 1,240 euros from 1 February.",
     "how much will the rent go up to?", "reworded"),
    # facts kept in MEMORY.md and knowledge files (a heading gives their context)
    ("MEMORY.md#Home", "- Wifi password: blue-heron-47 (the router is in the hall cupboard)",
     "what is the password for the wireless network at home?", "synonym"),
    ("MEMORY.md#Health", "- Allergic to penicillin: say so at every prescription",
     "which antibiotic am I allergic to?", "category"),
    ("MEMORY.md#Family", "- Sister Lena's birthday is 22 July; she would love a field guide to birds",
     "what present should I get my sister for her birthday?", "synonym"),
    ("knowledge/car.md#Service", "- Oil change every 15,000 km or once a year, 5W-30 synthetic",
     "how often does the car need an oil change?", "reworded"),
    ("knowledge/work.md#On call", "- My next on-call week for the payments team starts 17 March",
     "when am I on call for payments next?", "reworded"),
    ("knowledge/recipes.md#Pancakes", "- Pancakes: 250 g flour, 500 ml milk, 2 eggs, pinch of salt",
     "how much milk goes into the pancakes?", "reworded"),
]
