"""Pure statistics over plain lists: agreement, win/tie/loss, intervals. No Django."""
