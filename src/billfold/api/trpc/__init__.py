"""The tRPC dialect (document 000): billfold's procedures in tRPC's HTTP wire format.

`wire` reads and writes the format, `procedures` holds procedures by dotted path, `endpoint`
serves them under `/trpc` so the official `@trpc/client` (`httpLink`, `httpBatchLink`) calls
billfold unchanged.
"""
