"""Animate a portrait from Python: python examples/animate_portrait.py [PHOTO] [AUDIO]

Writes portrait.mp4 and portrait.png (a contact sheet) in the working directory.
"""

import sys

from teller_agent.animate import animate

if __name__ == "__main__":
    photo = sys.argv[1] if len(sys.argv) > 1 else None  # None: the bundled default portrait
    audio = sys.argv[2] if len(sys.argv) > 2 else None
    result = animate("portrait.mp4", image=photo, audio=audio, seconds=4.0, contact_sheet_path="portrait.png")
    print(f"wrote {result.video} ({result.frames} frames) and {result.contact_sheet}")
