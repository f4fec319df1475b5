"""Every file a stage reads or writes, in one place: one reader and one writer per kind, loaders
returning dataclasses, every writer atomic (:func:`gwnpe.provenance.atomic_output`) and every
output carrying its provenance. One module per kind of file, so that a stage's code hash
(:func:`gwnpe.provenance.code_hash`) covers only the file code it runs.

=====================  =======================================  ============================================
file                   writer                                   reader
=====================  =======================================  ============================================
``psd/<ifo>_psd.txt``  ``psd.write_psd``                        ``psd.read_psd``, ``psd.psd_on_domain``
``bank/bank.h5``       ``bank.write_bank``                      ``bank.load_bank`` -> ``Bank``
``svd/basis.h5``       ``basis.write_basis``                    ``basis.load_basis`` -> ``ReducedBasis``
training-set chunks    ``training_set.write_chunk``             ``training_set.read_chunk``
``training_set.h5``    ``training_set.write_training_set``      ``training_set.load_training_set``
``model/model.pt``     ``model.save_model``                     ``model.load_model`` -> ``NPEModel``
``checkpoint.pt``      ``model.save_checkpoint``                ``model.load_checkpoint``
injection tables                                                ``injections.read_injection_file``
``injections.h5``      ``injections.write_injections``          ``injections.load_injections`` -> ``Injections``
bilby Result files     ``results.save_result``, ``write_result``  ``results.read_result``
FD strain files        ``strain.write_fd_strain``               ``strain.read_fd_strain`` -> ``FDStrain``
histories, tables      ``common.write_history``, ``write_csv``,  ``common.read_csv``, ``read_json``
                       ``write_table``, ``write_json``
figures                ``common.save_figure``
any output             ``common.make_provenance``               ``common.read_provenance``
=====================  =======================================  ============================================
"""
