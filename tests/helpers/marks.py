"""A radiologist's mark as a minimal Comprehensive 3D SR (``workbench.runtime.study.write_mark_sr``): tests use the
package's own writer, as ``bench serve`` and the new-study screen do."""

from __future__ import annotations

from workbench.runtime.study import point_item, write_mark_sr

__all__ = ["point_item", "write_mark_sr"]
