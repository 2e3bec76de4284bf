"""Identifiers: ``name[@namespace][:action]``, wildcards on either side, namespaces that
partition the bus, local names (``_...``) that never leave the process, and the error a
bad identifier gives.

Expected output:
    test:run -> name='test' action='run' namespace=None local=False
    test -> name='test' action='*' namespace=None local=False
    job@ops:go -> name='job' action='go' namespace='ops' local=False
    _cache:clear -> name='_cache' action='clear' namespace=None local=True
    task:* matches task:run: True
    *:stop matches a:stop: True
    everything (default namespace) got: ['a:stop', '*:stop']
    stoppers got: ['a:stop', '*:stop', '*:stop']
    ops got: ['job:go']
    InvalidIdentifier: invalid identifier 'te*:run': the name 'te*' has a partial wildcard; use '*' alone
"""

from __future__ import annotations

from berrymq import Identifier, InvalidIdentifier, following_function, twitter

for text in ("test:run", "test", "job@ops:go", "_cache:clear"):
    ident = Identifier(text)
    print(f"{text} -> name={ident.name!r} action={ident.action!r} "
          f"namespace={ident.namespace!r} local={ident.is_local}")
print("task:* matches task:run:", Identifier("task:*").matches("task:run"))
print("*:stop matches a:stop:", Identifier("*:stop").matches("a:stop"))

everything, stoppers, ops = [], [], []


@following_function("*:*")
def receive_everything(message):
    everything.append(message.id)


@following_function("a:stop")
@following_function("b:stop")
def receive_stop(message):
    stoppers.append(message.id)


@following_function("*@ops:*")
def receive_ops(message):
    ops.append(message.id)


twitter("a:stop")             # reaches *:* and a:stop
twitter("*:stop")             # a wildcard sender: reaches *:*, a:stop and b:stop
twitter("job@ops:go")         # only the ops namespace sees it
print("everything (default namespace) got:", everything)
print("stoppers got:", stoppers)
print("ops got:", ops)

try:
    twitter("te*:run")
except InvalidIdentifier as exc:
    print("InvalidIdentifier:", exc)
