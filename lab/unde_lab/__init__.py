"""UNDE lab: booted Debian hosts (systemd-nspawn) on one machine, no Docker.

``lab/labctl`` is the command line (``cli``); ``lab/bench_lab.py`` and the tests reuse the
modules. One concern per module, each importing only those listed before it:

* ``common``     paths, errors, progress output, running commands, the lab lock, mounts
* ``inventory``  hosts and sites from ``inventories/lab/hosts.yml``; names derived per host
* ``processes``  a host's cgroups (kill, freeze, memory), its systemd-nspawn and PID 1
* ``faults``     kill, freeze/thaw, partition from the other site, heal
* ``network``    bridges, per-host netns + veth, the nft table, sysctls
* ``images``     the debootstrap base root and each host's overlay disk
* ``machines``   boot and power off hosts; ``up``, ``down``, ``status``, ``exec``, ``logs``
* ``cli``        argument parsing and the ``labctl`` commands

Layout on the controller (see lab/README.md):

* base root   ``/var/lib/unde-lab/base/trixie-<hash>``  (debootstrap, shared read-only lower layer)
* host disk   ``/var/lib/unde-lab/hosts/<host>/{upper,work,root}``  (overlayfs, ``root`` is merged)
* network     netns ``unde-<host>``, veth ``ul-<hash8>`` on bridge ``unde-hel``/``unde-loc``
* processes   cgroup v2 ``<unified>/unde-lab/<host>`` (freeze, kill, memory of a host)
* state       ``.lab/ssh`` (key), ``.lab/run`` (pid files), ``.lab/logs`` (console logs)

The SSH key and options come from ``unde_tools.lab_ssh`` (shared with the lab's clients), so
``tools/`` must be importable (``labctl`` puts it on the path; the Makefile exports it).
"""
