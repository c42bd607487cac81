"""The embedded default's broker: kombu's filesystem transport with its message hand-over made atomic.

kombu's filesystem transport (kombu/transport/filesystem.py, 5.x) writes a message in place: it
creates `<ms>_<uuid>.<queue>.msg`, then locks it and writes the body. Its reader does not look at
the lock: it lists the folder, moves the file away and reads it. A reader that lists the folder
between the writer's create and its write takes an empty file, cannot decode it, and the message is
gone; in CI a `ping` sent right after a worker's self-test waited 30 s for a reply that never came.
And a taken message is moved to the system's temporary folder, which is a copy and a delete, not a
rename, where that folder is on another filesystem, so two workers could both take it.

Here a message is written under a hidden name no reader lists (`.<name>.part`, in the same folder)
and renamed into place once whole, and a reader claims a message by renaming it into `.claimed/`
inside the queue folder: both renames stay on one filesystem, where rename is atomic. Everything
else (exchanges, fan-out for the control commands, sizes, purges) is kombu's own; the file names
are kombu's, so a worker of either kind reads the other's messages.

Selected in settings with `CELERY_BROKER_TRANSPORT` whenever the broker URL is `filesystem://`.
"""

from __future__ import annotations

import os
import shutil
import uuid
from queue import Empty
from time import monotonic

from kombu.transport import filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

CLAIMED = ".claimed"


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = os.path.join(self.data_folder_out, f".{name}.part")
        try:
            with open(partial, "wb") as handle:
                handle.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            try:
                os.unlink(partial)
            except OSError:
                pass
            raise filesystem.ChannelError(f"Cannot add file {final!r} to directory") from exc

    def _get(self, queue):
        wanted = f"{queue}.msg"
        claimed = os.path.join(self.data_folder_in, CLAIMED)
        os.makedirs(claimed, exist_ok=True)
        for name in sorted(os.listdir(self.data_folder_in)):
            if name.partition(".")[2] != wanted:
                continue
            taken = os.path.join(claimed, name)
            try:
                os.rename(os.path.join(self.data_folder_in, name), taken)
            except OSError:
                continue  # another worker took it first
            try:
                with open(taken, "rb") as handle:
                    payload = handle.read()
                if self.store_processed:
                    shutil.move(taken, os.path.join(self.processed_folder, name))
                else:
                    os.unlink(taken)
            except OSError as exc:
                raise filesystem.ChannelError(f"Cannot read file {taken!r} from queue.") from exc
            return loads(bytes_to_str(payload))
        raise Empty()


class FilesystemTransport(filesystem.Transport):
    Channel = Channel
